// impasto web app, "in my browser" mode: the photo and the painting never leave this computer.
// The files are read with the File API, resized on a canvas, turned into float32 NCHW tensors in [0, 1] and run
// through the method's exported ONNX graph (GET /models/{method}.onnx: inputs content 1x3xHxW, style 1x3xH'xW',
// alpha [1]; output image 1x3xHxW in [0, 1]) with onnxruntime-web's WebAssembly backend (served under /ort/ once
// `impasto web-assets` has fetched it). The only requests are GETs for the runtime and the model: nothing is uploaded.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let info = null; // GET /v1/browser
  let ortPromise = null;
  const sessions = {}; // method -> Promise<InferenceSession>
  const savedMethodState = new Map(); // option -> [disabled, title] while in browser mode
  let downloadUrl = null;
  const state = { last: null }; // exposed for tests and curious users: the last run's canvases and timings

  const selected = () => !!info && info.available && $("run-browser").checked;

  // ------------------------------------------------------------------ mode switch
  function applyMode() {
    const sel = $("method");
    if (selected()) {
      for (const opt of sel.options) {
        if (!savedMethodState.has(opt)) savedMethodState.set(opt, [opt.disabled, opt.title]);
        const m = info.models[opt.value];
        if (!m || !m.available) {
          opt.disabled = true;
          opt.title = m ? m.reason : "runs on the server only (not exported for the browser)";
        }
      }
      if (sel.selectedOptions[0] && sel.selectedOptions[0].disabled) {
        const first = Array.from(sel.options).find((o) => !o.disabled);
        if (first) sel.value = first.value;
        sel.dispatchEvent(new Event("change"));
      }
      $("run-browser-help").textContent = "In my browser: the photos never leave this computer (onnxruntime-web " +
        info.runtime.version + ", WebAssembly; the model is downloaded once).";
    } else {
      for (const [opt, [disabled, title]] of savedMethodState) {
        opt.disabled = disabled;
        opt.title = title;
      }
      savedMethodState.clear();
    }
  }

  async function loadInfo() {
    const radio = $("run-browser"), help = $("run-browser-help");
    try {
      const resp = await fetch("/v1/browser", { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      info = await resp.json();
    } catch (e) {
      radio.disabled = true;
      help.textContent = "In my browser: unavailable (could not ask the server: " + e.message + ").";
      return;
    }
    radio.disabled = !info.available;
    if (info.available) {
      help.textContent = "In my browser: the photos never leave this computer.";
      radio.title = "";
    } else {
      help.textContent = "In my browser is not set up on this server: run `" + info.command +
        "` there, then reload this page.";
      radio.title = info.reason || "";
    }
  }

  // ------------------------------------------------------------------ runtime and model
  function loadOrt() {
    if (!ortPromise) {
      ortPromise = new Promise((resolve, reject) => {
        if (window.ort) { resolve(window.ort); return; }
        const s = document.createElement("script");
        s.src = info.runtime.script;
        s.onload = () => (window.ort ? resolve(window.ort) : reject(new Error(s.src + " did not define ort")));
        s.onerror = () => reject(new Error("could not load " + s.src + " (run `" + info.command + "` on the server)"));
        document.head.appendChild(s);
      }).then((ort) => {
        ort.env.wasm.wasmPaths = info.runtime.wasm_paths;
        // threads need cross-origin isolation (SharedArrayBuffer); one thread works everywhere
        ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
        ort.env.wasm.proxy = false;
        return ort;
      });
      ortPromise.catch(() => { ortPromise = null; });
    }
    return ortPromise;
  }

  async function fetchModel(url, onProgress) {
    const resp = await fetch(url);
    if (!resp.ok) {
      let msg = "the server answered " + resp.status;
      try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    const total = +resp.headers.get("Content-Length") || 0;
    if (!resp.body || !total) return new Uint8Array(await resp.arrayBuffer());
    const reader = resp.body.getReader(), buf = new Uint8Array(total);
    let done = 0;
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      if (done + value.length > total) throw new Error("the model is larger than announced");
      buf.set(value, done);
      done += value.length;
      onProgress(done, total);
    }
    return buf.subarray(0, done);
  }

  function session(ort, method, onProgress) {
    if (!sessions[method]) {
      sessions[method] = fetchModel(info.models[method].url, onProgress)
        .then((bytes) => ort.InferenceSession.create(bytes, { executionProviders: ["wasm"],
          graphOptimizationLevel: "all" }));
      sessions[method].catch(() => { delete sessions[method]; });
    }
    return sessions[method];
  }

  // ------------------------------------------------------------------ images <-> tensors
  function fitSize(w, h, maxSide, minSide, upCap) {
    let s = maxSide && Math.max(w, h) > maxSide ? maxSide / Math.max(w, h) : 1;
    let W = Math.max(1, Math.round(w * s)), H = Math.max(1, Math.round(h * s));
    if (minSide && Math.min(W, H) < minSide) { // a thin style: stretched so the deepest layers get pixels
      s = minSide / Math.min(W, H);
      W = Math.max(minSide, Math.min(upCap, Math.round(W * s)));
      H = Math.max(minSide, Math.min(upCap, Math.round(H * s)));
    }
    return [W, H];
  }

  async function decode(blob, what, maxSide, minSide, upCap) {
    let bmp;
    try {
      bmp = await createImageBitmap(blob); // File API: decoded here, never sent anywhere
    } catch (e) {
      throw new Error("this browser cannot decode the " + what + " (" + (blob.type || "unknown type") + ")");
    }
    const [W, H] = fitSize(bmp.width, bmp.height, maxSide, minSide, upCap);
    if (W !== bmp.width || H !== bmp.height) {
      const big = bmp;
      bmp = await createImageBitmap(big, { resizeWidth: W, resizeHeight: H, resizeQuality: "high" });
      big.close();
    }
    const c = document.createElement("canvas");
    c.width = W;
    c.height = H;
    const g = c.getContext("2d", { willReadFrequently: true });
    g.fillStyle = "#fff"; // transparent pixels: on white
    g.fillRect(0, 0, W, H);
    g.drawImage(bmp, 0, 0);
    bmp.close();
    return c;
  }

  function toTensor(ort, c) {
    const W = c.width, H = c.height, n = W * H;
    const px = c.getContext("2d", { willReadFrequently: true }).getImageData(0, 0, W, H).data;
    const t = new Float32Array(3 * n);
    for (let i = 0; i < n; i++) {
      t[i] = px[4 * i] / 255;
      t[n + i] = px[4 * i + 1] / 255;
      t[2 * n + i] = px[4 * i + 2] / 255;
    }
    return new ort.Tensor("float32", t, [1, 3, H, W]);
  }

  // the output tensor drawn on a canvas; preserveColor: its luminance with the photo's chrominance (YCbCr, BT.601,
  // as impasto.pipeline.luminance_transfer)
  function draw(out, content, preserveColor) {
    const [, , H, W] = out.dims, n = W * H, d = out.data;
    const c = $("result-canvas");
    c.width = W;
    c.height = H;
    const g = c.getContext("2d", { willReadFrequently: true });
    const img = g.createImageData(W, H), px = img.data;
    const src = preserveColor ? content.getContext("2d").getImageData(0, 0, W, H).data : null;
    const clamp = (v) => Math.max(0, Math.min(1, v));
    for (let i = 0; i < n; i++) {
      let r = clamp(d[i]), gr = clamp(d[n + i]), b = clamp(d[2 * n + i]);
      if (src) {
        const y = 0.299 * r + 0.587 * gr + 0.114 * b;
        const cr = src[4 * i] / 255, cg = src[4 * i + 1] / 255, cb = src[4 * i + 2] / 255;
        const cy = 0.299 * cr + 0.587 * cg + 0.114 * cb;
        const u = 0.5 + (cb - cy) * 0.564, v = 0.5 + (cr - cy) * 0.713;
        r = y + (v - 0.5) / 0.713;
        b = y + (u - 0.5) / 0.564;
        gr = clamp((y - 0.299 * r - 0.114 * b) / 0.587);
        r = clamp(r);
        b = clamp(b);
      }
      px[4 * i] = Math.round(r * 255);
      px[4 * i + 1] = Math.round(gr * 255);
      px[4 * i + 2] = Math.round(b * 255);
      px[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    return c;
  }

  const paint = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))); // let the status show

  // ------------------------------------------------------------------ run
  async function run(o) {
    const ui = window.impasto;
    if (ui.isBusy()) return;
    ui.setBusy(true);
    $("result").hidden = true;
    const t0 = performance.now(), mb = (x) => (x / 1048576).toFixed(1);
    try {
      ui.setStatus("Loading onnxruntime-web…", 2);
      const ort = await loadOrt();
      ui.setStatus("Loading the " + o.method + " model…", 5);
      const sess = await session(ort, o.method, (done, total) => ui.setStatus(
        "Downloading the " + o.method + " model: " + mb(done) + " of " + mb(total) + " MB", 5 + Math.round(40 * done / total)));
      const tModel = performance.now();
      ui.setStatus("Reading the photo and the painting…", 50);
      const content = await decode(o.content.blob, "photo", o.maxSize, 0, 0);
      const style = await decode(o.style.blob, "painting", info.style_size, info.min_side, Math.max(info.style_size, 1024));
      ui.setStatus("Stylizing in your browser (" + content.width + " × " + content.height + " px)…", 60);
      await paint();
      const tRun = performance.now();
      const out = await sess.run({ content: toTensor(ort, content), style: toTensor(ort, style),
        alpha: new ort.Tensor("float32", Float32Array.of(o.alpha), [1]) });
      const tDone = performance.now();
      const c = draw(out[sess.outputNames[0]], content, o.preserveColor);
      const timings = { model_s: (tModel - t0) / 1000, stylize_s: (tDone - tRun) / 1000, total_s: (performance.now() - t0) / 1000 };
      state.last = { content: content, style: style, output: c, timings: timings, method: o.method };
      $("result-img").hidden = true;
      c.hidden = false;
      c.setAttribute("role", "img");
      c.setAttribute("aria-label", "The photo painted in the style of the painting (" + o.method + ", in your browser)");
      $("result-meta").textContent = c.width + " × " + c.height + " px · " + o.method + " · in your browser";
      const blob = await new Promise((r) => c.toBlob(r, "image/png"));
      if (downloadUrl) URL.revokeObjectURL(downloadUrl);
      downloadUrl = URL.createObjectURL(blob);
      const a = $("download");
      a.href = downloadUrl;
      a.download = "impasto-" + o.method + "-browser.png";
      $("result").hidden = false;
      ui.setStatus("Done in " + timings.total_s.toFixed(1) + " s, in your browser (stylizing " +
        timings.stylize_s.toFixed(1) + " s); nothing was uploaded.", 100);
    } catch (e) {
      ui.setStatus("Failed.", null);
      ui.showError("Stylizing in your browser failed: " + (e && e.message ? e.message : e));
    } finally {
      ui.setBusy(false);
    }
  }

  window.impastoBrowser = { selected: selected, run: run, state: state };

  function init() {
    for (const id of ["run-server", "run-browser"]) $(id).addEventListener("change", applyMode);
    loadInfo();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
