// impasto web app: plain JavaScript, no build step, no external resources.
// Talks to the JSON API of the same server: GET /v1/methods, GET /healthz, POST /v1/stylize,
// GET /v1/jobs/{id} (polled) and GET /v1/jobs/{id}/result. "In my browser" mode: browser.js.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 400;
  let limits = { max_upload_mb: 20, max_pixels: 16000000 };
  const chosen = { content: null, style: null }; // {blob, name, url}
  let busy = false;

  // ------------------------------------------------------------------ procedural sample images
  // Small pictures drawn on a canvas when the page loads: nothing to download, nothing copied from anywhere.
  function rng(seed) { // mulberry32
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  function canvas(w, h) {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    return c;
  }

  function drawHills(c) {
    const g = c.getContext("2d"), W = c.width, H = c.height, r = rng(7);
    const sky = g.createLinearGradient(0, 0, 0, H * 0.65);
    sky.addColorStop(0, "#243b73");
    sky.addColorStop(0.55, "#e98c5a");
    sky.addColorStop(1, "#f7d28c");
    g.fillStyle = sky;
    g.fillRect(0, 0, W, H);
    const sun = g.createRadialGradient(W * 0.68, H * 0.42, 2, W * 0.68, H * 0.42, H * 0.22);
    sun.addColorStop(0, "rgba(255,250,220,1)");
    sun.addColorStop(0.35, "rgba(255,220,140,0.9)");
    sun.addColorStop(1, "rgba(255,200,120,0)");
    g.fillStyle = sun;
    g.fillRect(0, 0, W, H);
    const layers = [["#6c5b7b", 0.50], ["#45527a", 0.58], ["#2f4a4a", 0.68], ["#1f3326", 0.80]];
    layers.forEach(([col, base], i) => {
      const p1 = r() * 6, p2 = r() * 6, a1 = 8 + r() * 14, a2 = 3 + r() * 8;
      g.fillStyle = col;
      g.beginPath();
      g.moveTo(0, H);
      for (let x = 0; x <= W; x += 2) {
        const y = H * base - a1 * Math.sin(x / (40 + i * 15) + p1) - a2 * Math.sin(x / 13 + p2);
        g.lineTo(x, y);
      }
      g.lineTo(W, H);
      g.closePath();
      g.fill();
    });
    for (let i = 0; i < 14; i++) { // fir trees on the nearest hill
      const x = r() * W, y = H * (0.78 + r() * 0.12), h = 14 + r() * 16;
      g.fillStyle = "#13241a";
      g.beginPath();
      g.moveTo(x, y - h);
      g.lineTo(x - h * 0.3, y);
      g.lineTo(x + h * 0.3, y);
      g.closePath();
      g.fill();
    }
  }

  function drawStillLife(c) {
    const g = c.getContext("2d"), W = c.width, H = c.height;
    const wall = g.createLinearGradient(0, 0, W, H);
    wall.addColorStop(0, "#5e6b5a");
    wall.addColorStop(1, "#2f3a33");
    g.fillStyle = wall;
    g.fillRect(0, 0, W, H);
    g.fillStyle = "#7a4b2a"; // table
    g.fillRect(0, H * 0.66, W, H * 0.34);
    g.fillStyle = "#5b361d";
    g.fillRect(0, H * 0.66, W, 6);
    // vase
    const vx = W * 0.3, vy = H * 0.66;
    const vg = g.createLinearGradient(vx - 30, 0, vx + 30, 0);
    vg.addColorStop(0, "#1e3f66");
    vg.addColorStop(0.4, "#4f86c6");
    vg.addColorStop(1, "#16304f");
    g.fillStyle = vg;
    g.beginPath();
    g.moveTo(vx - 12, vy - 95);
    g.bezierCurveTo(vx - 10, vy - 70, vx - 42, vy - 55, vx - 34, vy - 20);
    g.quadraticCurveTo(vx - 28, vy, vx, vy);
    g.quadraticCurveTo(vx + 28, vy, vx + 34, vy - 20);
    g.bezierCurveTo(vx + 42, vy - 55, vx + 10, vy - 70, vx + 12, vy - 95);
    g.closePath();
    g.fill();
    // fruit
    const fruit = [[W * 0.58, H * 0.62, 22, "#d9412b"], [W * 0.72, H * 0.63, 19, "#e3a31a"],
      [W * 0.84, H * 0.61, 24, "#8fb339"], [W * 0.66, H * 0.53, 18, "#c43d6b"]];
    for (const [x, y, rad, col] of fruit) {
      g.fillStyle = "rgba(0,0,0,0.25)";
      g.beginPath();
      g.ellipse(x + 6, y + rad * 0.85, rad, rad * 0.3, 0, 0, 2 * Math.PI);
      g.fill();
      const fg = g.createRadialGradient(x - rad * 0.4, y - rad * 0.4, 1, x, y, rad);
      fg.addColorStop(0, "#fff3d6");
      fg.addColorStop(0.25, col);
      fg.addColorStop(1, "#2b140c");
      g.fillStyle = fg;
      g.beginPath();
      g.arc(x, y, rad, 0, 2 * Math.PI);
      g.fill();
    }
    // window light
    const light = g.createRadialGradient(W * 0.15, H * 0.1, 5, W * 0.15, H * 0.1, W * 0.7);
    light.addColorStop(0, "rgba(255,240,200,0.35)");
    light.addColorStop(1, "rgba(255,240,200,0)");
    g.fillStyle = light;
    g.fillRect(0, 0, W, H);
  }

  function drawSwirls(c) { // night sky of swirling strokes
    const g = c.getContext("2d"), W = c.width, H = c.height, r = rng(11);
    g.fillStyle = "#13254d";
    g.fillRect(0, 0, W, H);
    const centres = [[W * 0.3, H * 0.35], [W * 0.72, H * 0.3], [W * 0.55, H * 0.75]];
    const palette = ["#1d3f7a", "#2f62b0", "#5b8fd0", "#9cc3e6", "#e9d45b", "#f4eab5", "#0c1733"];
    g.lineCap = "round";
    for (let s = 0; s < 1400; s++) {
      let x = r() * W, y = r() * H;
      const col = palette[Math.floor(r() * palette.length)];
      g.strokeStyle = col;
      g.globalAlpha = 0.75;
      g.lineWidth = 1.5 + r() * 2.5;
      g.beginPath();
      g.moveTo(x, y);
      for (let k = 0; k < 9; k++) {
        let ax = 0, ay = 0;
        for (const [cx, cy] of centres) { // rotate around each centre, weaker with distance
          const dx = x - cx, dy = y - cy, d2 = dx * dx + dy * dy + 400;
          ax += -dy / Math.sqrt(d2) * (3000 / d2 + 0.3);
          ay += dx / Math.sqrt(d2) * (3000 / d2 + 0.3);
        }
        ax += 0.6 * Math.sin(y / 23);
        const n = Math.hypot(ax, ay) || 1;
        x += (ax / n) * 4;
        y += (ay / n) * 4;
        g.lineTo(x, y);
      }
      g.stroke();
    }
    g.globalAlpha = 1;
    for (const [cx, cy] of centres.slice(0, 2)) { // two moons
      const m = g.createRadialGradient(cx, cy, 1, cx, cy, 16);
      m.addColorStop(0, "#fff7c2");
      m.addColorStop(0.6, "#f0d24a");
      m.addColorStop(1, "rgba(240,210,74,0)");
      g.fillStyle = m;
      g.beginPath();
      g.arc(cx, cy, 16, 0, 2 * Math.PI);
      g.fill();
    }
  }

  function drawGlass(c) { // stained-glass mosaic (Voronoi cells with lead lines)
    const g = c.getContext("2d"), W = c.width, H = c.height, r = rng(23);
    const palette = [[178, 34, 52], [32, 78, 160], [242, 178, 36], [40, 132, 84], [116, 52, 140],
      [226, 106, 44], [70, 160, 196]];
    const pts = [];
    for (let i = 0; i < 70; i++) pts.push([r() * W, r() * H, palette[Math.floor(r() * palette.length)]]);
    const img = g.createImageData(W, H);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        let d1 = Infinity, d2 = Infinity, best = 0;
        for (let i = 0; i < pts.length; i++) {
          const dx = x - pts[i][0], dy = y - pts[i][1], d = dx * dx + dy * dy;
          if (d < d1) { d2 = d1; d1 = d; best = i; } else if (d < d2) { d2 = d; }
        }
        const edge = Math.sqrt(d2) - Math.sqrt(d1) < 2.2;
        const shade = 0.75 + 0.25 * Math.cos((x + y) / 17 + best);
        const col = pts[best][2], o = 4 * (y * W + x);
        img.data[o] = edge ? 25 : col[0] * shade;
        img.data[o + 1] = edge ? 22 : col[1] * shade;
        img.data[o + 2] = edge ? 20 : col[2] * shade;
        img.data[o + 3] = 255;
      }
    }
    g.putImageData(img, 0, 0);
  }

  function drawDabs(c) { // impressionist dabs over a warm field
    const g = c.getContext("2d"), W = c.width, H = c.height, r = rng(5);
    const bg = g.createLinearGradient(0, 0, 0, H);
    bg.addColorStop(0, "#f0c27b");
    bg.addColorStop(0.5, "#d9774b");
    bg.addColorStop(1, "#5b7a3a");
    g.fillStyle = bg;
    g.fillRect(0, 0, W, H);
    const rows = [["#f6e7a8", "#f2b56b", "#e98e5d"], ["#e06c4c", "#c8553d", "#f2a65a"],
      ["#7ea04d", "#4f7b3a", "#c9d66b"]];
    g.lineCap = "round";
    for (let i = 0; i < 2600; i++) {
      const x = r() * W, y = r() * H, band = Math.min(2, Math.floor((y / H) * 3 + (r() - 0.5) * 0.6));
      const row = rows[Math.max(0, band)];
      g.strokeStyle = row[Math.floor(r() * row.length)];
      g.globalAlpha = 0.55 + r() * 0.4;
      g.lineWidth = 3 + r() * 3;
      const a = (r() - 0.5) * 0.9, len = 5 + r() * 8;
      g.beginPath();
      g.moveTo(x, y);
      g.lineTo(x + Math.cos(a) * len, y + Math.sin(a) * len);
      g.stroke();
    }
    g.globalAlpha = 1;
  }

  const SAMPLES = {
    content: [["Hills at sunset", drawHills], ["Still life", drawStillLife]],
    style: [["Swirling night", drawSwirls], ["Stained glass", drawGlass], ["Summer dabs", drawDabs]],
  };

  function buildSamples(slot) {
    const list = $(slot + "-samples");
    SAMPLES[slot].forEach(([title, draw], i) => {
      const c = canvas(320, 240);
      draw(c);
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "sample";
      btn.setAttribute("aria-pressed", "false");
      btn.setAttribute("aria-label", (slot === "content" ? "Use the sample photo: " : "Use the sample painting: ") + title);
      btn.title = title;
      const thumb = document.createElement("img");
      thumb.alt = "";
      thumb.src = c.toDataURL("image/png");
      btn.appendChild(thumb);
      btn.addEventListener("click", () => {
        c.toBlob((blob) => {
          if (!blob) { showError("Could not create the sample image in this browser."); return; }
          choose(slot, blob, "sample-" + slot + "-" + (i + 1) + ".png", title);
          markSample(slot, btn);
        }, "image/png");
      });
      list.appendChild(btn);
    });
  }

  function markSample(slot, active) {
    for (const b of $(slot + "-samples").querySelectorAll(".sample")) {
      b.setAttribute("aria-pressed", b === active ? "true" : "false");
    }
  }

  // ------------------------------------------------------------------ choosing images
  function choose(slot, blob, name, title) {
    hideError();
    const what = slot === "content" ? "photo" : "painting";
    if (blob.type && !blob.type.startsWith("image/")) {
      showError("The " + what + " \"" + name + "\" is not an image (" + blob.type + "). Choose a PNG, JPEG or WebP file.");
      return false;
    }
    if (blob.size > limits.max_upload_mb * 1048576) {
      showError("The " + what + " \"" + name + "\" is " + (blob.size / 1048576).toFixed(1) + " MB; this server accepts at most " +
        limits.max_upload_mb + " MB per image.");
      return false;
    }
    if (chosen[slot] && chosen[slot].url) URL.revokeObjectURL(chosen[slot].url);
    const url = URL.createObjectURL(blob);
    chosen[slot] = { blob: blob, name: name, url: url };
    const img = $(slot + "-preview");
    img.onload = () => {
      $(slot + "-meta").textContent = (title || name) + " · " + img.naturalWidth + " × " + img.naturalHeight + " px";
    };
    img.onerror = () => {
      $(slot + "-meta").textContent = (title || name) + " (this browser cannot preview it; the server will check it)";
    };
    img.src = url;
    img.alt = "Chosen " + what + ": " + (title || name);
    img.hidden = false;
    $(slot + "-empty").hidden = true;
    return true;
  }

  function wireSlot(slot) {
    const input = $(slot + "-file");
    input.addEventListener("change", () => {
      if (input.files && input.files[0]) {
        if (choose(slot, input.files[0], input.files[0].name)) markSample(slot, null);
      }
    });
    const drop = $(slot + "-drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragover"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("dragover"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("dragover");
      const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
      if (f && choose(slot, f, f.name)) markSample(slot, null);
    });
  }

  // ------------------------------------------------------------------ status, errors
  function showError(msg) {
    const el = $("error");
    el.textContent = msg;
    el.hidden = false;
  }

  function hideError() { $("error").hidden = true; }

  function setStatus(text, percent) {
    $("status-text").textContent = text;
    const p = $("progress");
    if (percent === null || percent === undefined) {
      p.hidden = true;
    } else {
      p.hidden = false;
      p.value = percent;
      p.setAttribute("aria-valuetext", percent + "%");
    }
  }

  function setBusy(b) {
    busy = b;
    const btn = $("stylize-button");
    btn.disabled = b;
    btn.textContent = b ? "Stylizing…" : "Stylize";
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      if (body && body.error) return body.error;
    } catch (e) { /* not JSON */ }
    return "The server answered " + resp.status + " " + resp.statusText + ".";
  }

  // ------------------------------------------------------------------ stylize and poll
  async function submit(ev) {
    ev.preventDefault();
    if (busy) return;
    hideError();
    if (!chosen.content) { showError("Choose a photo first (or pick a sample photo)."); return; }
    if (!chosen.style) { showError("Choose a painting first (or pick a sample painting)."); return; }
    const maxSize = $("max-size").value.trim();
    if (maxSize && !(/^\d+$/.test(maxSize) && +maxSize >= 16 && +maxSize <= 16384)) {
      showError("Maximum size must be a whole number between 16 and 16384, or empty for the full size.");
      $("max-size").focus();
      return;
    }
    const local = window.impastoBrowser; // "in my browser" (browser.js): nothing is uploaded
    if (local && local.selected()) {
      local.run({ content: chosen.content, style: chosen.style, method: $("method").value, alpha: +$("alpha").value,
        preserveColor: $("preserve-color").checked, maxSize: maxSize ? +maxSize : null });
      return;
    }
    const form = new FormData();
    form.append("content", chosen.content.blob, chosen.content.name);
    form.append("style", chosen.style.blob, chosen.style.name);
    form.append("method", $("method").value);
    form.append("alpha", $("alpha").value);
    form.append("preserve_color", $("preserve-color").checked ? "true" : "false");
    if (maxSize) form.append("max_size", maxSize);
    setBusy(true);
    $("result").hidden = true;
    setStatus("Uploading…", 0);
    let resp;
    try {
      resp = await fetch("/v1/stylize", { method: "POST", body: form });
    } catch (e) {
      setBusy(false);
      setStatus("Not started.", null);
      showError("Could not reach the server: " + e.message);
      return;
    }
    if (resp.status !== 202) {
      setBusy(false);
      setStatus("Not started.", null);
      showError(await errorText(resp));
      return;
    }
    const job = await resp.json();
    poll(job);
  }

  async function poll(job) {
    let st;
    try {
      const resp = await fetch(job.status_url, { cache: "no-store" });
      if (!resp.ok) throw new Error(await errorText(resp));
      st = await resp.json();
    } catch (e) {
      setBusy(false);
      setStatus("Stopped.", null);
      showError("Lost track of the job: " + e.message);
      return;
    }
    if (st.status === "queued") {
      const pos = st.queue_position === null || st.queue_position === undefined ? "" : " (position " + (st.queue_position + 1) + ")";
      setStatus("Queued" + pos + "…", 0);
    } else if (st.status === "running") {
      setStatus("Running: " + st.stage + " (" + st.progress + "%)", st.progress);
    } else if (st.status === "done") {
      setStatus("Done in " + st.elapsed_s.toFixed(1) + " s.", 100);
      showResult(st);
      return;
    } else {
      setBusy(false);
      setStatus("Failed.", null);
      showError(st.error || "The job failed.");
      return;
    }
    setTimeout(() => poll(job), POLL_MS);
  }

  function showResult(st) {
    const img = $("result-img");
    img.hidden = false;
    $("result-canvas").hidden = true;
    const url = st.result_url;
    img.onload = () => {
      $("result-meta").textContent = img.naturalWidth + " × " + img.naturalHeight + " px · " + $("method").value;
      setBusy(false);
      $("result").hidden = false;
    };
    img.onerror = () => {
      setBusy(false);
      showError("The result could not be loaded; try again.");
    };
    img.alt = "The photo painted in the style of the painting (" + $("method").value + ")";
    img.src = url;
    const a = $("download");
    a.href = url;
    a.download = "impasto-" + st.job_id.slice(0, 8) + ".png";
  }

  // ------------------------------------------------------------------ start
  async function loadMethods() {
    const sel = $("method");
    try {
      const resp = await fetch("/v1/methods");
      if (!resp.ok) throw new Error(await errorText(resp));
      const data = await resp.json();
      sel.textContent = "";
      for (const m of data.methods) {
        const opt = document.createElement("option");
        opt.value = m.name;
        opt.textContent = m.name + (m.available ? "" : " (unavailable here)");
        opt.disabled = !m.available;
        opt.title = m.available ? m.summary + " · " + m.paper : m.reason;
        sel.appendChild(opt);
      }
      if (data.default) sel.value = data.default;
      const about = () => {
        const m = data.methods.find((x) => x.name === sel.value);
        $("method-about").textContent = m ? m.summary + " (" + m.paper + ")" : "";
      };
      sel.addEventListener("change", about);
      about();
    } catch (e) {
      showError("Could not load the list of methods: " + e.message);
    }
  }

  async function loadLimits() {
    try {
      const resp = await fetch("/healthz");
      if (resp.ok) limits = (await resp.json()).limits || limits;
    } catch (e) { /* keep the defaults */ }
  }

  // for browser.js (the "in my browser" mode shares the page's status, errors and busy state)
  window.impasto = { showError: showError, hideError: hideError, setStatus: setStatus, setBusy: setBusy,
    isBusy: () => busy };

  function init() {
    buildSamples("content");
    buildSamples("style");
    wireSlot("content");
    wireSlot("style");
    const alpha = $("alpha");
    alpha.addEventListener("input", () => { $("alpha-value").textContent = (+alpha.value).toFixed(2); });
    $("stylize-form").addEventListener("submit", submit);
    loadMethods();
    loadLimits();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
