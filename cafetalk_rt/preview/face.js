// cafetalk-rt face rig drawing, shared by the preview viewer (viewer.js) and the live page
// (cafetalk_rt/serve/live.js). Inlined before them; defines window.CafeFace(rig, sizePx), whose
// draw(ctx, w) paints the face for the 52 ARKit weights w (Float32Array in [0, 1]) as rig.py's
// Rig.pose and the video renderer do.
(function () {
  "use strict";
  window.CafeFace = function (rig, S) {
  var byName = {};
  rig.shapes.forEach(function (s, j) { byName[s.name] = j; });

  // points = base + sum_c w_c * deltas[c], then the clamps (as Rig.pose in rig.py)
  function pose(w) {
    var p = Float32Array.from(rig.base), u = rig.unit;
    rig.deltas.forEach(function (e) {
      var wc = w[e[0]], idx = e[1], d = e[2];
      if (wc === 0) return;
      for (var k = 0; k < idx.length; k++) {
        p[2 * idx[k]] += wc * d[2 * k];
        p[2 * idx[k] + 1] += wc * d[2 * k + 1];
      }
    });
    rig.clamps.forEach(function (cl) {
      var mv = cl[0], fx = cl[1], above = cl[2];
      for (var k = 0; k < mv.length; k++) {
        var y = p[2 * mv[k] + 1], f = p[2 * fx[k] + 1];
        p[2 * mv[k] + 1] = above ? Math.min(y, f) : Math.max(y, f);
      }
    });
    for (var k = 0; k < p.length; k++) p[k] /= u;
    return p;
  }

  function hex(c) { return [1, 3, 5].map(function (i) { return parseInt(c.substr(i, 2), 16); }); }
  function shapeColor(s, w) {
    var a = s.a0;
    s.aw.forEach(function (e) { a += e[1] * w[e[0]]; });
    a = Math.max(0, Math.min(1, a));
    if (a < 0.02) return null;
    var c = hex(s.color), f = hex(s.fade);
    return "rgb(" + c.map(function (v, i) { return Math.round(f[i] + a * (v - f[i])); }).join(",") + ")";
  }

  function tracePath(ctx, s, p, close) {
    ctx.beginPath();
    s.idx.forEach(function (i, k) {
      if (k === 0) ctx.moveTo(p[2 * i] * S, p[2 * i + 1] * S); else ctx.lineTo(p[2 * i] * S, p[2 * i + 1] * S);
    });
    if (close) ctx.closePath();
  }

  function drawShape(ctx, s, p, color) {
    if (s.kind === "circle") {
      var cx = p[2 * s.idx[0]], cy = p[2 * s.idx[0] + 1];
      var r = Math.hypot(p[2 * s.idx[1]] - cx, p[2 * s.idx[1] + 1] - cy);
      ctx.beginPath(); ctx.arc(cx * S, cy * S, r * S, 0, 2 * Math.PI); ctx.fillStyle = color; ctx.fill();
    } else if (s.kind === "polygon") {
      tracePath(ctx, s, p, true); ctx.fillStyle = color; ctx.fill();
    } else {
      tracePath(ctx, s, p, false); ctx.strokeStyle = color;
      ctx.lineWidth = Math.max(1, s.width * S); ctx.lineJoin = "round"; ctx.stroke();
    }
  }

  function drawFace(ctx, w) {
    var p = pose(w);
    ctx.fillStyle = rig.background; ctx.fillRect(0, 0, S, S);
    rig.shapes.forEach(function (s) {
      var color = shapeColor(s, w);
      if (!color) return;
      if (s.clip) {
        ctx.save(); tracePath(ctx, rig.shapes[byName[s.clip]], p, true); ctx.clip();
        drawShape(ctx, s, p, color); ctx.restore();
      } else {
        drawShape(ctx, s, p, color);
      }
    });
  }

  return { draw: drawFace, pose: pose };
  };
})();
