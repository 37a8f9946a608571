"""Inter-op parallelism, measured before building it (issue 18): does running the policy's and the
value model's forward + backward in two Python threads (one intra-op thread each) beat running them
one after the other on two intra-op threads? On the benchmark's models (fixtures.py), batch 16 x 86
tokens, 20 steps of each, 3 repetitions.

    python benchmarks/bench_concurrency.py

Not used by instructrl yet; prints the three timings (and 1 thread sequential, for the scaling).
"""
import sys, threading, time
import torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import fixtures
from instructrl.models import load_policy, load_reward_model
cache = fixtures.build()
(policy, _), = [load_policy(cache / "policy")]
(value, _), = [load_reward_model(cache / "rm")]
print("policy", policy.config.n_embd, policy.config.n_layer, "value", value.config.n_embd, value.config.n_layer)
B, T = 16, 86
ids = torch.randint(3, policy.config.vocab_size, (B, T))
att = torch.ones(B, T, dtype=torch.long)

def pol():
    out = policy(input_ids=ids, attention_mask=att).logits
    out.float().log_softmax(-1).mean().backward()
def val():
    out = value(input_ids=ids, attention_mask=att)
    (out.logits if hasattr(out, "logits") else out[0]).mean().backward()

def seq(n):
    torch.set_num_threads(2)
    t = time.perf_counter()
    for _ in range(n):
        pol(); val()
    return time.perf_counter() - t

def conc(n):
    def w(f):
        torch.set_num_threads(1)
        for _ in range(n):
            f()
    t = time.perf_counter()
    th = [threading.Thread(target=w, args=(f,)) for f in (pol, val)]
    for x in th: x.start()
    for x in th: x.join()
    return time.perf_counter() - t

def one(n, k):
    torch.set_num_threads(k)
    t = time.perf_counter()
    for _ in range(n):
        pol(); val()
    return time.perf_counter() - t

seq(3); conc(3)
for r in range(3):
    print(f"seq 2 threads {seq(20):.2f}s  concurrent 2x1 {conc(20):.2f}s  seq 1 thread {one(20,1):.2f}s")
