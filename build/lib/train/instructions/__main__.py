"""``python -m train.instructions``: generate the instruction corpus, train the text → AU detector,
report held-out accuracy (by-template and random splits) and write the runtime checkpoint.

    python -m train.instructions --out cafetalk_rt/assets/instruction_detector.safetensors \\
        --report runs/instructions/report.json

Embeddings are cached per text under ``--cache-dir`` (one .npz per encoder), so a re-run trains
in seconds. ``--text-encoder clip:/dir`` trains a detector for another encoder.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from cafetalk_rt.control.text_encoder import DEFAULT_TEXT_ENCODER, load_text_encoder
from train.instructions import corpus
from train.instructions.evaluate import CachedEncoder, evaluate_instructions
from train.instructions.train import (DetectorConfig, best_decoder, fit, metrics, save_detector, to_detector,
                                      training_sets)

log = logging.getLogger("train.instructions")


def _arrays(examples, splits):
    sel = [e for e in examples if e.split in splits]
    return [e.text for e in sel], np.stack([e.labels for e in sel]), np.stack([e.intensity for e in sel])


def train_and_evaluate(encoder, examples, config: DetectorConfig, fit_splits=("train",), lik_weight=None):
    """Fit on ``fit_splits``; decoder weight: given, or the best on val; score val and test.
    Returns (detector without encoder, {"val": metrics, "test": metrics})."""
    texts, y, i = _arrays(examples, fit_splits)
    net = fit(encoder.encode(texts), y, i, config)
    detector = to_detector(net, training_sets(y), lik_weight=0.0, temperature=config.temperature,
                           encoder_spec="-", encoder_name=encoder.name)
    data = {s: _arrays(examples, (s,)) for s in ("val", "test")}
    x = {s: encoder.encode(data[s][0]) for s in data}
    detector.lik_weight = best_decoder(detector, x["val"], data["val"][1]) if lik_weight is None else lik_weight
    detector.metadata["lik_weight"] = f"{detector.lik_weight:g}"
    return detector, {s: metrics(*detector.predict(x[s]), data[s][1], data[s][2]) for s in data}


def run(args) -> dict:
    """Corpus → embeddings → (1) a train-only model: decoder weight from val, held-out test score;
    (2) the shipped model: the same recipe on train + val, that decoder weight, test score;
    (3) the paper's random split, for comparison; (4) held-out sentences end to end."""
    t0 = time.perf_counter()
    instructions = corpus.generate(args.seed)
    examples, dropped = corpus.detector_examples(instructions, corpus.negative_sentences(args.seed))
    counts = {s: sum(e.split == s for e in examples) for s in corpus.SPLITS}
    log.info("corpus: %d instructions, %d clause examples %s, %d misaligned dropped (%.1f s)",
             len(instructions), len(examples), counts, dropped, time.perf_counter() - t0)
    encoder = CachedEncoder(load_text_encoder(args.text_encoder),
                            Path(args.cache_dir) / f"{args.text_encoder.replace('/', '_').replace(':', '-')}.npz")
    encoder.encode([e.text for e in examples])
    config = DetectorConfig(epochs=args.epochs, seed=args.seed)
    probe, train_only = train_and_evaluate(encoder, examples, config)
    detector, shipped = train_and_evaluate(encoder, examples, config, ("train", "val"), probe.lik_weight)
    rprobe, random = train_and_evaluate(encoder, corpus.random_split(examples, args.seed), config)
    t1 = time.perf_counter()
    held_out = {"exact_set_accuracy": shipped["test"]["exact_set_accuracy"], "macro_f1": shipped["test"]["macro_f1"]}
    detector.encoder_spec = args.text_encoder
    detector.metadata |= {"text_encoder": args.text_encoder, "corpus_seed": str(args.seed),
                          "trained_on": "by-template train + val splits", "heldout_test": json.dumps(held_out),
                          "config": json.dumps(config.__dict__)}
    detector._encoder = encoder
    test_ins = [i for i in instructions if i.split == "test"]
    encoder.encode([c for i in test_ins for c in _clause_texts(i)])  # one batch, then cached
    sentences = evaluate_instructions(detector, test_ins)
    report = {"text_encoder": encoder.name, "corpus": {"instructions": len(instructions), "examples": counts,
                                                       "misaligned_dropped": dropped, "seed": args.seed},
              "config": config.__dict__, "lik_weight": probe.lik_weight, "by_template_train_only": train_only,
              "by_template_shipped": shipped, "random_split": {"lik_weight": rprobe.lik_weight, **random},
              "test_instructions": sentences, "seconds": round(t1 - t0, 1)}
    if args.out:
        save_detector(detector, args.out)
        log.info("wrote %s (%d bytes)", args.out, Path(args.out).stat().st_size)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=1))
    return report


def _clause_texts(instruction) -> list[str]:
    from cafetalk_rt.errors import InputError
    from cafetalk_rt.control.instruction_text import split_instruction

    try:
        return [c.text for c in split_instruction(instruction.text, instruction.duration_s)]
    except InputError:
        return []


def summary(report: dict) -> str:
    """A few lines for the console."""
    lines = []
    for name in ("by_template_train_only", "by_template_shipped", "random_split"):
        t = report[name]["test"]
        lines.append(f"{name:22s} test n={t['n']}: exact-set {t['exact_set_accuracy']:.3f} "
                     f"(with AU {t['exact_set_accuracy_with_au']:.3f}, no-AU rejected {t['no_au_rejected']:.3f}), "
                     f"macro F1 {t['macro_f1']:.3f}, intensity by level {t['mean_intensity_by_level']}")
    s = report["test_instructions"]
    lines.append(f"held-out instructions n={s['n']}: span-set accuracy {s['span_set_accuracy']:.3f}, "
                 f"intensity within 0.2 {s['intensity_within_0.2']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="python -m train.instructions", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="detector checkpoint to write (.safetensors)")
    ap.add_argument("--report", default=None, help="JSON report to write")
    ap.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER, help="minilm (default), hf:/dir or clip:/dir")
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "cafetalk_rt" / "instructions"))
    ap.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    ap.add_argument("--epochs", type=int, default=DetectorConfig.epochs)
    report = run(ap.parse_args(argv))
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
