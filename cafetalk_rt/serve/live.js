// cafetalk-rt live page: the microphone (getUserMedia) or a chosen file → /v1/stream → the face.
// Audio is captured with an AudioWorklet and sent in 20 ms chunks.
// Inlined by cafetalk_rt/serve/page.py after face.js (window.CafeFace). The audio goes out as
// f32le PCM at the AudioContext's rate; each frame is drawn as it arrives. Delay of frame t =
// arrival time − the time the audio up to t / fps had been sent (as `cafetalk-rt stream` reports).
// For tests: ?autostart=mic&seconds=4 starts the microphone and ends after 4 s; <body> carries
// data-state (idle/streaming/done/error), data-frames, data-jaw-min, data-jaw-max, data-delay-p95,
// data-capture (audio-worklet or script-processor).
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var S = D.size_px, JAW = D.names.indexOf("jawOpen");
  var canvas = document.getElementById("face"), ctx = canvas.getContext("2d");
  var face = window.CafeFace(D.rig, S);
  var body = document.body, statusEl = document.getElementById("status"), delayEl = document.getElementById("delay");
  var ws = null, audioCtx = null, processor = null, source = null, mediaStream = null;
  var sent = [], sentSamples = 0, delays = [], frames = 0, jawMin = 1, jawMax = 0, fps = 25, rate = 16000;
  var latest = new Float32Array(52);

  function setState(s, text) { body.dataset.state = s; statusEl.textContent = text || s; }
  function percentile(a, q) {
    if (!a.length) return 0;
    var b = a.slice().sort(function (x, y) { return x - y; });
    return b[Math.min(b.length - 1, Math.floor(q * b.length))];
  }
  function sentAt(t) {  // wall time when the audio up to t seconds had been sent
    var need = t * rate;
    for (var i = 0; i < sent.length; i++) if (sent[i][0] >= need) return sent[i][1];
    return sent.length ? sent[sent.length - 1][1] : performance.now();
  }

  function onMessage(ev) {
    var m = JSON.parse(ev.data), now = performance.now();
    if (m.type === "ready") { fps = m.fps; setState("streaming", "streaming (look-ahead " + m.lookahead_ms + " ms)"); }
    else if (m.type === "frames") {
      m.blendshapes.forEach(function (w, k) {
        delays.push(now - sentAt((m.start + k) / fps));
        jawMin = Math.min(jawMin, w[JAW]); jawMax = Math.max(jawMax, w[JAW]);
        latest = Float32Array.from(w);
      });
      frames += m.blendshapes.length;
      if (delays.length > 500) delays = delays.slice(-500);
      var p95 = percentile(delays, 0.95);
      delayEl.textContent = "sound → face: " + Math.round(delays[delays.length - 1]) + " ms (p95 " +
        Math.round(p95) + " ms), " + frames + " frames";
      body.dataset.frames = frames; body.dataset.jawMin = jawMin.toFixed(4); body.dataset.jawMax = jawMax.toFixed(4);
      body.dataset.delayP95 = Math.round(p95);
    } else if (m.type === "done") { setState("done", "done: " + m.frames + " frames"); stopAudio(); ws.close(); }
    else if (m.type === "error") { setState("error", "server: " + m.message); }
  }

  function draw() { face.draw(ctx, latest); window.requestAnimationFrame(draw); }

  function stopAudio() {
    if (processor) { processor.disconnect(); processor.onaudioprocess = null; if (processor.port) processor.port.onmessage = null; processor = null; }
    if (source) { try { source.disconnect(); if (source.stop) source.stop(); } catch (e) { /* already stopped */ } source = null; }
    if (mediaStream) { mediaStream.getTracks().forEach(function (t) { t.stop(); }); mediaStream = null; }
  }

  function end() {
    stopAudio();
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "end" }));
  }

  function start(makeSource) {
    end();
    audioCtx = audioCtx || new (window.AudioContext || window.webkitAudioContext)();
    rate = audioCtx.sampleRate; sent = []; sentSamples = 0; delays = []; frames = 0; jawMin = 1; jawMax = 0;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/stream";
    ws = new WebSocket(url);
    ws.onmessage = onMessage;
    ws.onerror = function () { setState("error", "connection failed"); };
    ws.onopen = function () {
      ws.send(JSON.stringify({ type: "start", sample_rate: rate, format: "f32le",
        emotion: document.getElementById("emotion").value,
        lookahead_ms: Number(document.getElementById("lookahead").value) }));
      Promise.resolve(makeSource(audioCtx)).then(function (src) {
        source = src;
        return tap(audioCtx).then(function (node) {
          processor = node;
          src.connect(node); node.connect(audioCtx.destination);
          if (src.start) { src.connect(audioCtx.destination); src.onended = end; src.start(); }
        });
      }).catch(function (e) { setState("error", String(e)); });
    };
  }

  // Capture: an AudioWorklet (128-sample render quanta, sent every 20 ms); ScriptProcessorNode
  // where AudioWorklet is missing (an insecure context, an old browser).
  var WORKLET = "class Tap extends AudioWorkletProcessor { process(inputs) { var x = inputs[0][0];" +
    " if (x) this.port.postMessage(x.slice(0)); return true; } } registerProcessor('cafetalk-tap', Tap);";

  function send(x) {
    if (!ws || ws.readyState !== 1) return;
    ws.send(x.buffer);
    sentSamples += x.length; sent.push([sentSamples, performance.now()]);
  }

  function tap(ac) {
    body.dataset.capture = ac.audioWorklet ? "audio-worklet" : "script-processor";
    if (!ac.audioWorklet) {
      var sp = ac.createScriptProcessor(1024, 1, 1);
      sp.onaudioprocess = function (e) { send(new Float32Array(e.inputBuffer.getChannelData(0))); };
      return Promise.resolve(sp);
    }
    var url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
    return ac.audioWorklet.addModule(url).catch(function () { /* already added */ }).then(function () {
      var node = new AudioWorkletNode(ac, "cafetalk-tap"), parts = [], have = 0;
      var chunk = Math.round(ac.sampleRate * 0.02);
      node.port.onmessage = function (e) {
        parts.push(e.data); have += e.data.length;
        if (have < chunk) return;
        var x = new Float32Array(have), o = 0;
        parts.forEach(function (p) { x.set(p, o); o += p.length; });
        parts = []; have = 0;
        send(x);
      };
      return node;
    });
  }

  function microphone(ac) {
    return navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false } })
      .then(function (ms) { mediaStream = ms; return ac.createMediaStreamSource(ms); });
  }

  function file(ac) {
    var f = document.getElementById("file").files[0];
    if (!f) return Promise.reject(new Error("choose an audio file first"));
    return f.arrayBuffer().then(function (b) { return ac.decodeAudioData(b); }).then(function (buf) {
      var s = ac.createBufferSource(); s.buffer = buf; return s;
    });
  }

  document.getElementById("mic").onclick = function () { start(microphone); };
  document.getElementById("play").onclick = function () { start(file); };
  document.getElementById("stop").onclick = end;
  setState("idle", "idle: start the microphone or play a file");
  draw();
  var q = new URLSearchParams(location.search);
  if (q.get("autostart") === "mic") {
    start(microphone);
    window.setTimeout(end, 1000 * Number(q.get("seconds") || 5));
  }
})();
