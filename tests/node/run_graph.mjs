// Run one exported cafetalk_rt ONNX graph with onnxruntime-node: no Python involved.
//   node run_graph.mjs MODEL.onnx FEED.json OUT.json
// FEED.json: {name: {dtype: "float32" | "int64", dims: [...], data: base64 little-endian bytes}}
// OUT.json: the outputs in the same format. Input names, dtypes and shapes are the I/O contract
// in the README ("Exported graphs").
import { readFileSync, writeFileSync } from "node:fs";
import * as ort from "onnxruntime-node";

const [modelPath, feedPath, outPath] = process.argv.slice(2);
const ARRAYS = { float32: Float32Array, int64: BigInt64Array };

function toTensor({ dtype, dims, data }) {
  const bytes = Buffer.from(data, "base64");
  const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength); // aligned
  return new ort.Tensor(dtype, new ARRAYS[dtype](copy), dims);
}

const session = await ort.InferenceSession.create(modelPath, { executionProviders: ["cpu"] });
const raw = JSON.parse(readFileSync(feedPath, "utf8"));
const feeds = Object.fromEntries(session.inputNames.map((n) => [n, toTensor(raw[n])]));
const t0 = performance.now();
const results = await session.run(feeds);
const ms = performance.now() - t0;
const out = {};
for (const name of session.outputNames) {
  const t = results[name];
  out[name] = { dtype: t.type, dims: t.dims, data: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64") };
}
writeFileSync(outPath, JSON.stringify(out));
console.log(`${modelPath}: ${session.outputNames.join(", ")} in ${ms.toFixed(1)} ms`);
