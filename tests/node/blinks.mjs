// The procedural blink layer of cafetalk_rt/blinks.py in plain JavaScript (no dependencies),
// for Node.js callers of the exported graphs: the same seed gives the same blinks as Python.
// Spec: docs/blinks.md. Usage: node blinks.mjs '{"seed": 7, "start_frame": 0, "num_frames": 250, "fps": 25}'
// prints {"curve": [...]} (eyeBlink per frame, float64).

const MASK = (1n << 64n) - 1n;
const GOLDEN = 0x9E3779B97F4A7C15n;

export function hashUniform(seed, k) {
  let z = (BigInt.asUintN(64, BigInt(seed)) + BigInt(k + 1) * GOLDEN) & MASK;
  z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK;
  z ^= z >> 31n;
  return Number(z >> 11n) / 2 ** 53;
}

function smoothstep(x) {
  x = Math.min(Math.max(x, 0), 1);
  return x * x * (3 - 2 * x);
}

export class BlinkTrack {
  constructor(seed) {
    this.seed = seed;
    this.blinks = [];
    this.nextStart = 0.2 + 2.3 * hashUniform(seed, 0);
  }

  until(untilS) {
    while (this.nextStart < untilS) {
      const j = this.blinks.length;
      const u = [0, 1, 2, 3, 4].map((i) => hashUniform(this.seed, 1 + 5 * j + i));
      const b = { onset: this.nextStart, close: 0.04 + 0.02 * u[0], hold: 0.13 + 0.02 * u[1],
                  open: 0.07 + 0.02 * u[2], peak: 0.95 + 0.05 * u[3] };
      b.end = b.onset + b.close + b.hold + b.open;
      this.blinks.push(b);
      this.nextStart = b.end + 1.5 + 3.5 * u[4];
    }
    return this.blinks.filter((b) => b.onset < untilS);
  }

  // eyeBlink on output frames [startFrame, startFrame + numFrames) at fps, sampled at frame centres.
  curve(startFrame, numFrames, fps) {
    const out = new Float64Array(numFrames);
    if (numFrames === 0) return out;
    const blinks = this.until((startFrame + numFrames - 1 + 0.5) / fps);
    for (let i = 0; i < numFrames; i++) {
      const t = (startFrame + i + 0.5) / fps;
      for (const b of blinks) {
        if (t < b.onset || t > b.end) continue;
        const up = smoothstep((t - b.onset) / b.close);
        const down = 1 - smoothstep((t - b.onset - b.close - b.hold) / b.open);
        out[i] = Math.max(out[i], b.peak * Math.min(up, down));
      }
    }
    return out;
  }
}

// The layer on frames (Float32Array, numFrames × C, row-major) whose first row is output frame
// startFrame at fps; names: the C ARKit names in output order. Same as cafetalk_rt.blinks.apply_blinks.
export function applyBlinks(frames, C, names, seed, fps, startFrame = 0, track = new BlinkTrack(seed)) {
  const n = frames.length / C;
  const b = track.curve(startFrame, n, fps);
  const clip = (v) => Math.min(1, Math.max(0, v));
  for (const side of ["Left", "Right"]) {
    const [blink, wide, squint] = ["eyeBlink", "eyeWide", "eyeSquint"].map((k) => names.indexOf(k + side));
    for (let f = 0; f < n; f++) {
      const r = f * C;
      frames[r + blink] = clip(Math.max(frames[r + blink], b[f]));
      frames[r + wide] = clip(frames[r + wide] * (1 - b[f]));
      frames[r + squint] = clip(frames[r + squint] * (1 - 0.5 * b[f]));
    }
  }
  return frames;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const req = JSON.parse(process.argv[2]);
  const track = new BlinkTrack(req.seed);
  console.log(JSON.stringify({ curve: Array.from(track.curve(req.start_frame, req.num_frames, req.fps)) }));
}
