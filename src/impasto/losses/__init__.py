"""Training losses of impasto: pure functions plus thin ``nn.Module`` wrappers.

Features are ``B x C x H x W`` tensors or ``{layer_name: tensor}`` mappings. See each module for the paper and
equation it implements: :mod:`.content` (content, identity), :mod:`.style` (mean/std, Gram, balanced),
:mod:`.regularizers` (TV, encoder feature regulariser), :mod:`.contrastive` (IEContraAST and encoder
refinement), :mod:`.adversarial` (multi-scale discriminator, LSGAN).
"""

from __future__ import annotations

from impasto.losses.adversarial import LSGANLoss, MultiScaleDiscriminator, lsgan_d_loss, lsgan_g_loss
from impasto.losses.content import (
    ContentLoss,
    EdgeLoss,
    IdentityLoss,
    content_loss,
    edge_loss,
    identity_loss,
    mean_variance_norm,
)
from impasto.losses.contrastive import (
    ContentProjector,
    IEContraContentLoss,
    IEContraStyleLoss,
    PatchContentContrastiveLoss,
    PatchMLP,
    RefineStyleContrastiveLoss,
    StyleEmbedding,
    StyleProjector,
    iecontra_batch_labels,
    iecontra_batch_masks,
    iecontra_content_loss,
    iecontra_style_loss,
    info_nce,
    patch_content_contrastive_loss,
    refine_style_contrastive_loss,
    reshuffle,
)
from impasto.losses.regularizers import (
    FeatureRegularizer,
    TotalVariation,
    feature_regularizer,
    total_variation,
)
from impasto.losses.style import (
    BalancedStyleLoss,
    Features,
    GramStyleLoss,
    MeanStdStyleLoss,
    balanced_style_loss,
    gram,
    gram_style_loss,
    gram_style_loss_supremum,
    mean_std,
    mean_std_style_loss,
)

__all__ = [
    # content
    "content_loss",
    "identity_loss",
    "edge_loss",
    "mean_variance_norm",
    "ContentLoss",
    "IdentityLoss",
    "EdgeLoss",
    # style
    "Features",
    "mean_std",
    "mean_std_style_loss",
    "gram",
    "gram_style_loss",
    "gram_style_loss_supremum",
    "balanced_style_loss",
    "MeanStdStyleLoss",
    "GramStyleLoss",
    "BalancedStyleLoss",
    # regularisers
    "total_variation",
    "feature_regularizer",
    "TotalVariation",
    "FeatureRegularizer",
    # contrastive
    "iecontra_batch_labels",
    "iecontra_batch_masks",
    "info_nce",
    "iecontra_style_loss",
    "iecontra_content_loss",
    "StyleProjector",
    "ContentProjector",
    "IEContraStyleLoss",
    "IEContraContentLoss",
    "reshuffle",
    "StyleEmbedding",
    "refine_style_contrastive_loss",
    "RefineStyleContrastiveLoss",
    "PatchMLP",
    "patch_content_contrastive_loss",
    "PatchContentContrastiveLoss",
    # adversarial
    "MultiScaleDiscriminator",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "LSGANLoss",
]
