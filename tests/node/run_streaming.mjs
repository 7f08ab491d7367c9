// Drive the stateful streaming graph (streaming_step) chunk by chunk from Node.js, as a C++ or
// Node service would: no Python involved.
//   node run_streaming.mjs MODEL.onnx AUDIO.f32 NOISE.f32 PARAMS.json OUT.f32
// AUDIO.f32: the stream's mono 16 kHz samples (float32 little-endian).
// NOISE.f32: x_T per frame, (frames, 52) float32: frame f's noise (frames before 0 use zeros).
// PARAMS.json: {layout: the graph's "cafetalk.streaming" metadata, emotion, intensity, guidance_scale,
//   and optionally seed + names (the 52 ARKit names in output order): the seed's blink layer, blinks.mjs}.
// OUT.f32: the stream's frames, (round(duration * 25), 52) float32, 25 fps.
// The state layout is in cafetalk_rt/backends/streaming_contract.py (and docs/live.md).
import { readFileSync, writeFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { applyBlinks } from "./blinks.mjs";

const [modelPath, audioPath, noisePath, paramsPath, outPath] = process.argv.slice(2);
const C = 52;
const floats = (path) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const audio = floats(audioPath);
const noise = floats(noisePath);
const { layout, emotion, intensity, guidance_scale, seed, names } = JSON.parse(readFileSync(paramsPath, "utf8"));
const H = layout.hop_frames, L = layout.lookahead_frames, P = layout.past_frames, E = layout.encoder_context_frames;
const T = P + H + L, chunk = H * 640;
const total = Math.round(audio.length / 640);

const session = await ort.InferenceSession.create(modelPath, { executionProviders: ["cpu"] });
const f32 = (data, dims) => new ort.Tensor("float32", data, dims);
// a stream's first call: zero state and start = 1 (the graph puts the silence state in)
let state = {
  state_audio: f32(new Float32Array((E + L) * 640), [1, (E + L) * 640]),
  state_features: f32(new Float32Array(2 * P * 384), [1, 2 * P, 384]),
  state_frames: f32(new Float32Array(P * C), [1, P, C]),
};
const frames = new Float32Array(total * C);
let t0 = performance.now();
for (let n = 0; ; n++) {
  const f0 = n * H - L; // this call's first output frame
  if (f0 >= total) break;
  const a = new Float32Array(chunk); // the hop's samples, silence past the end
  a.set(audio.subarray(Math.min(audio.length, n * chunk), Math.min(audio.length, (n + 1) * chunk)));
  const x = new Float32Array(T * C); // x_T of frames [f0 - P, f0 + H + L)
  for (let i = 0; i < T; i++) {
    const f = f0 - P + i;
    if (f >= 0) x.set(noise.subarray(f * C, (f + 1) * C), i * C);
  }
  const out = await session.run({
    audio_chunk: f32(a, [1, chunk]), ...state, start: f32(Float32Array.of(n === 0 ? 1 : 0), [1]),
    noise: f32(x, [1, T, C]),
    emotion: new ort.Tensor("int64", BigInt64Array.of(BigInt(emotion), BigInt(emotion)), [1, 2]),
    intensity: f32(Float32Array.of(intensity, intensity), [1, 2]),
    condition_mix: f32(Float32Array.of(1), [1]), guidance_scale: f32(Float32Array.of(guidance_scale), [1]),
  });
  state = { state_audio: out.next_state_audio, state_features: out.next_state_features, state_frames: out.next_state_frames };
  for (let k = 0; k < H; k++) {
    const f = f0 + k;
    if (f >= 0 && f < total) frames.set(out.frames.data.subarray(k * C, (k + 1) * C), f * C);
  }
}
// the seed's blinks over the eyes (docs/blinks.md); a live caller does this per hop with one BlinkTrack
if (seed !== undefined) applyBlinks(frames, C, names, seed, 25);
const ms = performance.now() - t0;
writeFileSync(outPath, Buffer.from(frames.buffer));
console.log(`${total} frames in ${ms.toFixed(0)} ms (${(ms / (audio.length / 16)).toFixed(3)} rtf)`);
