"""Side by side on one GPU, in one call: TRL's GRPOTrainer (CISPO, vLLM colocated) and ours
(`rlhf train recipes/gpu/proof_0.5b.yaml`, colocated) on the same model and the same round.

Model: Qwen2.5-0.5B shape (hidden 896, 24 layers, 14 heads, 2 KV heads, tied embeddings), vocab
32,000 (the offline byte-level tokenizer of shared/gpu/make_tiny_tokenizer.py), random bf16
weights, built once here. Round: 32 prompts x 8 samples x GEN new tokens, then 4 updates of 64
sequences (TRL: steps_per_generation=4, per_device_train_batch_size=64; ours:
train.mini_batches=4). TRL 1.16 with gradient checkpointing; ours with its defaults (packing,
activation checkpointing where memory needs it), FP32 and bf16 heads.

Per phase: TRL's round = its second generation round (steps 5-8: generation + 4 updates); TRL's
update = the median of steps 6-8 (updates only). Ours: steps 2+ (step 1 holds JIT and the first
sync; ``ours_async``: steps 3+), round = time/step, updates = time/train - time/old_logprobs. Update throughput = response
tokens trained per second, the same count on both sides.

    python benchmarks/peer_trl.py --tokenizer DIR [--gen 1024,4096] [--phases trl,ours,ours_bf16,ours_async]

``ours_async``: ``train.async_mode=one_step`` with the engine awake next to the learner on the one
GPU (``placement.engine_sleep=false``): the next batch generates while this one trains, so it
trains on samples one policy version old (TRL and ``ours`` are on-policy).

Needs vLLM and Ray (shared/gpu staging) and the TRL wheels (trl, datasets, dill, multiprocess).
Writes benchmarks/results/peer_trl_<gpu>.json and prints the table with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("PEER_WORK", "/tmp/peer"))
MODEL = WORK / "model"


def build_model(tokenizer: str) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    if (MODEL / "config.json").exists():
        return
    tok = AutoTokenizer.from_pretrained(tokenizer)
    cfg = Qwen2Config(vocab_size=32000, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=8192,
                      tie_word_embeddings=True, rope_theta=1e6, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(MODEL)
    tok.save_pretrained(MODEL)


def trl_child(gen: int) -> None:
    """Runs in its own process: TRL's trainer for 2 generation rounds, one RESULT line a step."""
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT="29517")
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(MODEL)
    ds = Dataset.from_dict({"prompt": [f"Compute {i} plus {i * 7 % 13} and explain:" for i in range(1024)]})

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.t = time.time()

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            print(f"RESULT step {state.global_step} {time.time() - self.t:.3f}", flush=True)

    args = GRPOConfig(output_dir=str(WORK / "trl_out"), per_device_train_batch_size=64,
                      num_generations=8, steps_per_generation=4, max_completion_length=gen,
                      loss_type="cispo", epsilon_high=5.0, learning_rate=1e-6, bf16=True,
                      gradient_checkpointing=True, max_steps=8, logging_steps=1, report_to="none",
                      save_strategy="no", use_vllm=True, vllm_mode="colocate",
                      vllm_gpu_memory_utilization=0.3, temperature=1.0, beta=0.0, seed=0)
    trainer = GRPOTrainer(model=str(MODEL), reward_funcs=lambda completions, **k: [
        float(len(c) % 7) for c in completions], args=args, train_dataset=ds,
        processing_class=tok, callbacks=[Clock()])
    trainer.train()
    lens = [h["completions/mean_length"] for h in trainer.state.log_history
            if "completions/mean_length" in h]
    print(f"RESULT mean_length {statistics.mean(lens[-4:]):.1f}", flush=True)


def run_trl(gen: int, log: Path) -> dict:
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, __file__, "--trl-child", str(gen)], stdout=f,
                            stderr=subprocess.STDOUT, timeout=900).returncode
    return dict(parse_trl(log.read_text(), gen, rc), wall_s=time.time() - t0)


def parse_trl(text: str, gen: int, rc: int = 0) -> dict:
    """TRL's per-step RESULT lines (progress bars share their lines: no anchors)."""
    steps = {int(a): float(b) for a, b in re.findall(r"RESULT step (\d+) ([\d.]+)", text)}
    m = re.search(r"RESULT mean_length ([\d.]+)", text)
    if rc != 0 or len(steps) < 8 or not m:
        return {"phase": "trl", "gen": gen, "error": f"rc={rc}, steps={sorted(steps)}",
                "log_tail": text[-2000:]}
    update = statistics.median([steps[6], steps[7], steps[8]])
    resp_tokens = 64 * float(m.group(1))
    return {"phase": "trl", "gen": gen, "round_s": sum(steps[i] for i in range(5, 9)),
            "generate_s": steps[5] - update, "updates_s": 4 * update,
            "update_tok_s": resp_tokens / update, "mean_len": float(m.group(1)), "steps": steps}


# our variants: head precision, the overrides that make them, the first steady-state step (step 1
# holds JIT and the first sync's setup; one_step's first push, with the IPC handles' first
# mapping, comes at step 2)
OURS = {"ours": (True, [], 2), "ours_bf16": (False, [], 2),
        # one-step-off pipelining on the one GPU: the engine stays awake next to the learner and
        # generates batch n+1 while the learner trains on batch n (samples one version old)
        "ours_async": (True, ["placement.engine_sleep=false", "train.async_mode=one_step"], 3)}


def run_ours(gen: int, phase: str, log: Path, steps: int) -> dict:
    fp32, extra, first = OURS[phase]
    name = f"{phase}_{gen}"
    out = WORK / "ours"
    t0 = time.time()
    cmd = [sys.executable, "-m", "rlhf.cli", "train", "recipes/gpu/proof_0.5b.yaml",
           f"model.path={MODEL}", "model.build=null", f"run.steps={steps}", f"run.output_dir={out}",
           f"run.name={name}", f"rollout.max_new_tokens={gen}", f"precision.lm_head_fp32={str(fp32).lower()}",
           "rollout.engine.gpu_memory_utilization=0.3", *extra]
    with open(log, "w") as f:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=900).returncode
    path = out / name / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    rows = [r for r in rows if r.get("kind") == "train" and r["step"] >= first]
    if rc != 0 or not rows:
        return {"phase": phase, "gen": gen, "error": f"rc={rc}",
                "log_tail": log.read_text()[-3000:]}

    def med(key: str) -> float:
        return statistics.median(r.get(key, float("nan")) for r in rows)

    updates = statistics.median(r["time/train"] - r["time/old_logprobs"] for r in rows)
    resp_tokens = med("response_len/mean") * 256
    return {"phase": phase, "gen": gen, "round_s": med("time/step"),
            "generate_s": med("time/generate"), "old_logprobs_s": med("time/old_logprobs"),
            "updates_s": updates, "update_tok_s": resp_tokens / updates,
            "sync_s": med("time/weight_sync"), "mean_len": med("response_len/mean"),
            "learner_peak_gib": med("memory/learner_peak_gib"), "rows": rows,
            "wall_s": time.time() - t0}


def report(results: list[dict]) -> None:
    print(f"\nside by side, {results[0].get('gpu')}: round = generate + 4 updates of 64 sequences")
    print(f"{'gen':>5} {'phase':>10} {'round s':>8} {'gen s':>7} {'upd s':>7} {'upd tok/s':>10} "
          f"{'round / TRL':>11} {'upd x TRL':>9}")
    for gen in sorted({r["gen"] for r in results}):
        trl = next((r for r in results if r["gen"] == gen and r["phase"] == "trl" and "error" not in r), None)
        for r in (r for r in results if r["gen"] == gen):
            if "error" in r:
                print(f"{gen:>5} {r['phase']:>10} error: {r['error']}")
                continue
            ratio = f"{r['round_s'] / trl['round_s']:.2f}x" if trl else "-"
            upd = f"{r['update_tok_s'] / trl['update_tok_s']:.2f}x" if trl else "-"
            print(f"{gen:>5} {r['phase']:>10} {r['round_s']:8.1f} {r['generate_s']:7.1f} "
                  f"{r['updates_s']:7.2f} {r['update_tok_s']:10.0f} {ratio:>11} {upd:>9}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer")
    ap.add_argument("--gen", default="1024")
    ap.add_argument("--phases", default="trl,ours,ours_bf16", help=f"trl and any of {sorted(OURS)}")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--trl-child", type=int)
    ap.add_argument("--logs", default=os.environ.get("OUT", str(WORK)))
    ap.add_argument("--report", help="print the table of a saved JSON")
    ap.add_argument("--reparse-trl", nargs=2, metavar=("JSON", "LOG"),
                    help="re-read TRL's log into a saved JSON (its first entry for that length)")
    args = ap.parse_args()
    if args.trl_child:
        return trl_child(args.trl_child)
    if args.reparse_trl:
        path, log = map(Path, args.reparse_trl)
        doc = json.loads(path.read_text())
        gen = int(re.search(r"_(\d+)\.log$", log.name).group(1))
        doc["results"] = [dict(parse_trl(log.read_text(), gen), gpu=doc["gpu"])
                          if r["phase"] == "trl" and r["gen"] == gen else r for r in doc["results"]]
        path.write_text(json.dumps(doc, indent=2))
        return report(doc["results"])
    if args.report:
        return report(json.loads(Path(args.report).read_text())["results"])
    import torch

    gpu = torch.cuda.get_device_name()
    build_model(args.tokenizer)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    out = ROOT / "benchmarks" / "results" / f"peer_trl_{'h200' if 'H200' in gpu else 'gpu'}{args.tag}.json"
    for gen in map(int, args.gen.split(",")):
        for phase in args.phases.split(","):
            log = logs / f"{phase}_{gen}.log"
            r = run_trl(gen, log) if phase == "trl" else run_ours(gen, phase, log, args.steps)
            r["gpu"] = gpu
            results.append(r)
            print(json.dumps({k: v for k, v in r.items() if k not in ("rows", "log_tail")}), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"gpu": gpu, "results": results}, indent=2))
            (logs / out.name).write_text(out.read_text())
    report(results)


if __name__ == "__main__":
    main()
