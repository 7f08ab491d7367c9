// cafetalk-rt preview viewer: draws the face rig for the <audio> element's currentTime.
// Inlined into the page by cafetalk_rt/preview/html.py; reads the JSON in <script id="data">.
// Frame i is shown for t in [i / fps, (i + 1) / fps), as in the video and the saved files.
// Seek: page.html#t=1.25 (or ?t=1.25) opens paused at 1.25 s.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var rig = D.rig, T = D.num_frames, fps = D.fps, S = D.size_px, N = 52;
  var audio = document.getElementById("audio");
  var scrub = document.getElementById("scrub");
  var timeEl = document.getElementById("time");
  var playBtn = document.getElementById("play");
  var curvesCanvas = document.getElementById("curves");
  var dpr = window.devicePixelRatio || 1;
  var current = 0, playing = false, shown = -1;
  function frameOf(t) { return Math.max(0, Math.min(T - 1, Math.floor(t * fps + 1e-6))); }

  function weights(clip, i) {
    var w = new Float32Array(N), v = clip.values, o = i * N;
    for (var c = 0; c < N; c++) w[c] = v[o + c] / D.scale;
    return w;
  }

  var drawFace = window.CafeFace(rig, S).draw;  // face.js

  function makeCanvas(w, h) {
    var c = document.createElement("canvas");
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    c.style.width = w + "px"; c.style.height = h + "px";
    var ctx = c.getContext("2d"); ctx.scale(dpr, dpr);
    return [c, ctx];
  }

  var panels = D.clips.map(function (clip) {
    var div = document.createElement("div"); div.className = "panel";
    var label = document.createElement("div"); label.className = "label"; label.textContent = clip.label || " ";
    label.style.width = S + "px";
    var cc = makeCanvas(S, S); cc[0].className = "face";
    div.appendChild(label); div.appendChild(cc[0]);
    document.getElementById("panels").appendChild(div);
    return { clip: clip, ctx: cc[1], canvas: cc[0] };
  });

  // ---- curves: chosen channels over the whole clip, solid = first clip, dashed = compare
  var CW = Math.max(480, S * D.clips.length), CH = 150;
  curvesCanvas.width = Math.round(CW * dpr); curvesCanvas.height = Math.round(CH * dpr);
  curvesCanvas.style.width = CW + "px"; curvesCanvas.style.height = CH + "px";
  var cctx = curvesCanvas.getContext("2d"); cctx.scale(dpr, dpr);
  var curves = D.curves.map(function (c) { return { label: c[0], chans: c[1], color: c[2], on: true }; });
  var extraColors = ["#ffd166", "#06d6a0", "#ef476f", "#118ab2", "#f78c6b", "#b5e48c"];
  var background = null;
  function xOf(i) { return T > 1 ? (i / (T - 1)) * (CW - 1) : 0; }

  function renderCurves() {
    var off = document.createElement("canvas"); off.width = curvesCanvas.width; off.height = curvesCanvas.height;
    var o = off.getContext("2d"); o.scale(dpr, dpr);
    o.fillStyle = "#11151c"; o.fillRect(0, 0, CW, CH);
    o.strokeStyle = "#39414f"; o.lineWidth = 1; o.fillStyle = "#8a94a3"; o.font = "10px sans-serif";
    for (var sec = 1; sec <= T / fps; sec++) {
      var x = xOf(sec * fps); o.beginPath(); o.moveTo(x, 0); o.lineTo(x, CH); o.stroke(); o.fillText(sec + " s", x + 2, CH - 3);
    }
    D.clips.forEach(function (clip, ci) {
      o.setLineDash(ci === 0 ? [] : [4, 3]);
      curves.forEach(function (cv) {
        if (!cv.on) return;
        o.strokeStyle = cv.color; o.lineWidth = 1.2; o.beginPath();
        for (var i = 0; i < T; i++) {
          var v = 0;
          cv.chans.forEach(function (c) { v += clip.values[i * N + c]; });
          var y = 4 + (1 - v / cv.chans.length / D.scale) * (CH - 8);
          if (i === 0) o.moveTo(xOf(i), y); else o.lineTo(xOf(i), y);
        }
        o.stroke();
      });
    });
    background = off;
  }

  function renderLegend() {
    var legend = document.getElementById("legend");
    legend.textContent = "";
    curves.forEach(function (cv) {
      var span = document.createElement("span");
      span.textContent = cv.label; span.style.color = cv.color; span.className = cv.on ? "" : "off";
      span.title = "click to show/hide";
      span.addEventListener("click", function () { cv.on = !cv.on; renderLegend(); renderCurves(); draw(true); });
      legend.appendChild(span);
    });
  }

  var select = document.getElementById("add");
  D.names.forEach(function (name, c) {
    var opt = document.createElement("option"); opt.value = String(c); opt.textContent = name; select.appendChild(opt);
  });
  select.addEventListener("change", function () {
    if (select.value === "") return;
    var c = parseInt(select.value, 10);
    curves.push({ label: D.names[c], chans: [c], color: extraColors[curves.length % extraColors.length], on: true });
    select.value = ""; renderLegend(); renderCurves(); draw(true);
  });

  function showActive(i) {
    var w = weights(D.clips[0], i), order = [];
    for (var c = 0; c < N; c++) if (w[c] >= 0.05) order.push(c);
    order.sort(function (a, b) { return w[b] - w[a]; });
    document.getElementById("active").textContent = order.slice(0, 8).map(function (c) {
      return D.names[c] + " " + w[c].toFixed(2);
    }).join("   ") || "(no channel above 0.05)";
  }

  function draw(force) {
    var i = frameOf(current);
    if (i !== shown || force) {
      panels.forEach(function (pn) { drawFace(pn.ctx, weights(pn.clip, i)); });
      showActive(i);
      shown = i;
    }
    cctx.drawImage(background, 0, 0, CW, CH);
    var x = xOf(i); cctx.strokeStyle = "#ffffff"; cctx.lineWidth = 1.5; cctx.setLineDash([]);
    cctx.beginPath(); cctx.moveTo(x, 0); cctx.lineTo(x, CH); cctx.stroke();
    scrub.value = String(current);
    timeEl.textContent = current.toFixed(2) + " / " + D.duration_s.toFixed(2) + " s  (frame " + i + ")";
    document.body.dataset.frame = String(i);
    document.body.dataset.time = current.toFixed(3);
  }

  function seek(t) {
    current = Math.max(0, Math.min(D.duration_s, t));
    try { audio.currentTime = current; } catch (e) { /* not seekable yet: applied on loadedmetadata */ }
    draw(false);
  }

  function tick() {
    if (!playing) return;
    current = audio.currentTime;
    draw(false);
    window.requestAnimationFrame(tick);
  }

  function setPlaying(on) {
    playing = on; playBtn.textContent = on ? "Pause" : "Play";
    if (on) window.requestAnimationFrame(tick);
  }

  playBtn.addEventListener("click", function () {
    if (playing) { audio.pause(); return; }
    if (current >= D.duration_s - 1e-3) seek(0);
    var p = audio.play();
    if (p && p.catch) p.catch(function (e) { setPlaying(false); timeEl.textContent = "cannot play audio: " + e.message; });
  });
  audio.addEventListener("play", function () { setPlaying(true); });
  audio.addEventListener("pause", function () { setPlaying(false); current = audio.currentTime; draw(false); });
  audio.addEventListener("ended", function () { setPlaying(false); current = D.duration_s; draw(false); });
  audio.addEventListener("loadedmetadata", function () { if (!playing) audio.currentTime = current; });
  scrub.addEventListener("input", function () { seek(parseFloat(scrub.value)); });
  curvesCanvas.addEventListener("click", function (e) {
    var r = curvesCanvas.getBoundingClientRect();
    seek(((e.clientX - r.left) / r.width) * D.duration_s);
  });
  document.addEventListener("keydown", function (e) {
    if (e.target && e.target.tagName === "SELECT") return;
    if (e.key === " ") { e.preventDefault(); playBtn.click(); }
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      audio.pause();
      seek((frameOf(current) + (e.key === "ArrowRight" ? 1 : -1)) / fps + 1e-4);
    }
  });

  function timeFromUrl() {
    var m = /[#?&]t=([0-9.]+)/.exec(window.location.hash + "&" + window.location.search);
    return m ? parseFloat(m[1]) : 0;
  }
  window.addEventListener("hashchange", function () { audio.pause(); seek(timeFromUrl()); });

  renderLegend();
  renderCurves();
  seek(timeFromUrl());
  var r = panels[0].canvas.getBoundingClientRect();
  document.body.dataset.faceRect = [r.left, r.top, r.width, r.height].map(Math.round).join(",");
  document.body.dataset.ready = "1";
  window.setTimeout(function () {
    var errors = window.__errors || [];
    document.body.dataset.errors = String(errors.length);
    var pre = document.getElementById("errors");
    if (errors.length) { pre.hidden = false; pre.textContent = errors.join("\n"); }
  }, 0);
})();
