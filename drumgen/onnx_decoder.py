"""The decoding step as one ONNX Runtime graph, built from a `DrumGPT`'s own weights.

At this model size a step is a few small matrix products, and `FastDecoder` still spends most
of it dispatching about 70 torch calls, and the sampler about 25 more. Here the whole step is
one `run` of one graph: the 4 blocks and the head, then the draw (the bias rows, the grammar's
mask, temperature, top-k, top-p and the inverse CDF, with a uniform number drawn by the
caller's torch generator, so the random stream is the other engines'). ONNX Runtime's
GroupQueryAttention reads and appends the KV cache in place (the cache arrays are bound as
both its past and its present), so nothing is copied per step and no Python runs between the
layers. bench/generate.py measures it against FastDecoder.

The weights stay fp32 (ONNX Runtime has no fp16 matrix product on x86 CPUs), so this engine
computes what FastDecoder's "own" weights compute, up to the order of float sums: the tests
hold it to the naive loop token for token. The prompt still runs through FastDecoder (once a
call); its cache is then packed row by row to the start of this engine's cache, since
GroupQueryAttention keeps each row's keys at positions 0 to its length, not left-padded.
"""

from __future__ import annotations

import functools
import threading
import weakref

import numpy as np
import torch

from .sampling import NUCLEUS_CANDIDATES, FastDecoder


@functools.cache
def available() -> bool:
    """Whether onnxruntime (and onnx, to build the graph) can be imported here."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _graph(model) -> bytes:
    """The serialized step graph: inputs x (the embedded tokens, [n, C]), seqlens_k (each
    row's cached length, int32 [n]), total (the longest row's length after this token, int32
    scalar), per layer its key and value caches [n, heads, max_len, head_size], and the
    sampler's (see `OnnxDecoder.sample`); outputs the logits [n, vocab], the caches (bound to
    the same arrays as the inputs), the masked logits and the drawn tokens."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg, t = model.config, model.transformer
    width, heads = cfg.n_embd, cfg.n_head
    size, vocab = width // heads, cfg.vocab_size
    inits, scopes, count = [], [[]], iter(range(10**6))  # scopes: the graph, then any branch

    def weight(name: str, value) -> str:
        array = value.detach().cpu().float().numpy() if torch.is_tensor(value) else value
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(kind: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        outputs = outputs or [f"{kind}_{next(count)}"]
        domain = "com.microsoft" if kind == "GroupQueryAttention" else ""
        scopes[-1].append(helper.make_node(kind, inputs, outputs, domain=domain, **attrs))
        return outputs[0]

    def branch(build, outputs: list[tuple[str, int]]) -> onnx.GraphProto:
        """An If branch: the nodes `build` adds, ending in `outputs` (name, element type)."""
        scopes.append([])
        build()
        return helper.make_graph(scopes.pop(), f"branch_{next(count)}", [],
                                 [tensor(name, kind, None) for name, kind in outputs])

    def either(cond: str, then, otherwise, outputs: list[tuple[str, int]]) -> list[str]:
        """`then()` if `cond`, else `otherwise()`: each makes its own copy of `outputs`."""
        tag = next(count)
        names = [f"{name}_{tag}" for name, _ in outputs]
        yes = branch(lambda: then([f"{n}_then" for n in names]),
                     [(f"{n}_then", k) for n, (_, k) in zip(names, outputs, strict=True)])
        no = branch(lambda: otherwise([f"{n}_else" for n in names]),
                    [(f"{n}_else", k) for n, (_, k) in zip(names, outputs, strict=True)])
        op("If", [cond], names, then_branch=yes, else_branch=no)
        return names

    def tensor(name: str, kind, shape) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, kind, shape)

    cache = ["n", heads, "max_len", size]
    inputs = [tensor("x", TensorProto.FLOAT, ["n", width]),
              tensor("seqlens_k", TensorProto.INT32, ["n"]),
              tensor("total", TensorProto.INT32, [])]
    outputs = [tensor("logits", TensorProto.FLOAT, ["n", vocab])]
    rows3 = weight("rows3", np.array([0, 1, -1], dtype=np.int64))  # [n, C] -> [n, 1, C]
    rows2 = weight("rows2", np.array([0, width], dtype=np.int64))
    eps = cfg.layer_norm_epsilon
    x = "x"
    for i, block in enumerate(t.h):
        attn, mlp = block.attn, block.mlp
        inputs += [tensor(f"past_key{i}", TensorProto.FLOAT, cache),
                   tensor(f"past_value{i}", TensorProto.FLOAT, cache)]
        outputs += [tensor(f"key{i}", TensorProto.FLOAT, cache),
                    tensor(f"value{i}", TensorProto.FLOAT, cache)]
        h = op("LayerNormalization", [x, weight(f"ln1_w{i}", block.ln_1.weight),
                                      weight(f"ln1_b{i}", block.ln_1.bias)], epsilon=eps)
        # GPT-2's Conv1D is x @ W + b, W stored [in, out]: Gemm without transposes
        qkv = op("Gemm", [h, weight(f"qkv_w{i}", attn.c_attn.weight),
                          weight(f"qkv_b{i}", attn.c_attn.bias)])
        a = op("GroupQueryAttention",
               [op("Reshape", [qkv, rows3]), "", "", f"past_key{i}", f"past_value{i}",
                "seqlens_k", "total"], [f"attn{i}", f"key{i}", f"value{i}"],
               num_heads=heads, kv_num_heads=heads)
        a = op("Gemm", [op("Reshape", [a, rows2]), weight(f"out_w{i}", attn.c_proj.weight),
                        weight(f"out_b{i}", attn.c_proj.bias)])
        x = op("Add", [x, a])
        h = op("LayerNormalization", [x, weight(f"ln2_w{i}", block.ln_2.weight),
                                      weight(f"ln2_b{i}", block.ln_2.bias)], epsilon=eps)
        h = op("Gemm", [h, weight(f"fc_w{i}", mlp.c_fc.weight), weight(f"fc_b{i}", mlp.c_fc.bias)])
        h = op("Gemm", [op("Gelu", [h], approximate="tanh"),  # GPT-2's gelu_new
                        weight(f"proj_w{i}", mlp.c_proj.weight),
                        weight(f"proj_b{i}", mlp.c_proj.bias)])
        x = op("Add", [x, h])
    h = op("LayerNormalization", [x, weight("lnf_w", t.ln_f.weight),
                                  weight("lnf_b", t.ln_f.bias)], epsilon=t.ln_f.eps)
    op("Gemm", [h, weight("head_w", model.lm_head.weight)], ["logits"], transB=1)

    # The sampler, as `sampling.sample`, `warp` and `draw` do it in torch: the bias rows added
    # and the grammar's mask applied, then temperature, top-k and top-p, and the inverse-CDF
    # draw with the caller's uniform number. Top-k and top-p run only when on (If branches:
    # a full sort of the vocabulary per row was a fifth of a batch-8 step), and top-p sorts
    # in full only when a row's NUCLEUS_CANDIDATES best hold less than top_p, as `warp` does.
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs += [tensor("allowed", TensorProto.BOOL, ["n", vocab]),
               tensor("bias", f32, ["n", vocab]), tensor("u", f32, ["n", 1]),
               tensor("temperature", f32, []), tensor("use_top_k", TensorProto.BOOL, []),
               tensor("top_k", i64, [1]), tensor("use_top_p", TensorProto.BOOL, []),
               tensor("top_p", f32, [])]
    outputs += [tensor("masked", f32, ["n", vocab]), tensor("token", i64, ["n", 1])]
    minus_inf = weight("minus_inf", np.array(-np.inf, dtype=np.float32))
    last = weight("last", np.array([-1], dtype=np.int64))
    axis = weight("axis", np.array(-1, dtype=np.int64))
    candidates = weight("candidates", np.array([min(NUCLEUS_CANDIDATES, vocab)], np.int64))
    everything = weight("everything", np.array([vocab], dtype=np.int64))
    op("Where", ["allowed", op("Add", ["logits", "bias"]), minus_inf], ["masked"])
    warm = op("Div", ["masked", "temperature"])

    def top_k(out):
        kth = op("ReduceMin", [op("TopK", [warm, "top_k"], [f"{out[0]}_v", f"{out[0]}_i"],
                                  axis=-1), last], keepdims=1)  # the k-th largest
        op("Where", [op("Less", [warm, kth]), minus_inf, warm], out)

    warm = either("use_top_k", top_k, lambda out: op("Identity", [warm], out), [("k", f32)])[0]

    def top_p(out):
        probs = op("Softmax", [warm], axis=-1)
        few = op("TopK", [probs, candidates], ["few_best", "few_order"], axis=-1)
        short = op("Less", [op("ReduceSum", [few, last], keepdims=1), "top_p"])
        short = op("Cast", [op("ReduceMax", [op("Cast", [short], to=f32)], keepdims=0)],
                   to=TensorProto.BOOL)  # any row
        best, order = either(
            short, lambda o: op("TopK", [probs, everything], o, axis=-1),
            lambda o: (op("Identity", [few], [o[0]]), op("Identity", ["few_order"], [o[1]])),
            [("best", f32), ("order", i64)])
        drop = op("GreaterOrEqual", [op("Sub", [op("CumSum", [best, axis]), best]), "top_p"])
        none_kept = op("ConstantOfShape", [op("Shape", [warm])])  # zeros, [n, vocab]
        kept = op("ScatterElements", [none_kept, order, op("Cast", [op("Not", [drop])],
                                                           to=f32)], axis=-1)
        op("Where", [op("Cast", [kept], to=TensorProto.BOOL), warm, minus_inf], out)

    warm = either("use_top_p", top_p, lambda out: op("Identity", [warm], out), [("p", f32)])[0]
    cdf = op("CumSum", [op("Softmax", [warm], axis=-1), axis])
    total = op("ReduceMax", [cdf, last], keepdims=1)  # the cdf's last value
    below = op("Cast", [op("Less", [cdf, op("Mul", ["u", total])])], to=i64)
    op("Min", [op("ReduceSum", [below, last], keepdims=1),
               weight("top_token", np.array([vocab - 1], dtype=np.int64))], ["token"])
    graph = helper.make_graph(scopes[0], "drumgen_step", inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                    helper.make_opsetid("com.microsoft", 1)])
    proto.ir_version = 10
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def session(model):
    """The model's step session, built once (0.04-0.08 s here) and again when any weight changes
    in place (as training does), on the calling thread's torch thread count."""
    tensors = list(model.parameters())
    key = (tuple((w.data_ptr(), w._version) for w in tensors), torch.get_num_threads())
    with _sessions_lock:  # one build per model and key, whichever thread asks first
        return _session(model, key)


def _session(model, key: tuple):
    import onnxruntime as ort

    cached = _sessions.get(model)
    if cached is None or cached[0] != key:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # no busy-waiting between steps: on a 2-core server a spinning pool takes the core
        # the web server and its clients need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # the graph optimizer's notes are not the user's
        made = ort.InferenceSession(_graph(model), options, providers=["CPUExecutionProvider"])
        cached = _sessions[model] = (key, made)
    return cached[1]


# beside the model, not on it: a session cannot be deep-copied, and a model can
_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def _take(cache: np.ndarray, rows: np.ndarray, used: int) -> np.ndarray:
    """`rows` of a cache, copying only its first `used` positions (the rest stay zeros)."""
    out = np.zeros((len(rows), *cache.shape[1:]), cache.dtype)
    out[:, :, :used] = cache[rows, :, :used]
    return out


class OnnxDecoder:
    """`FastDecoder`'s interface (start, step, keep) with the steps run by `session`."""

    def __init__(self, model):
        if next(model.parameters()).device.type != "cpu":
            raise ValueError("the onnx engine runs on the CPU; use the fast engine on CUDA")
        self.model, self.session = model, session(model)
        t = model.transformer
        self.layers, self.heads = len(t.h), model.config.n_head
        self.wte = t.wte.weight.detach().float().numpy()
        self.wpe = t.wpe.weight.detach().float().numpy()

    def start(self, ids: torch.Tensor, attn: torch.Tensor, style_ids: torch.Tensor,
              max_len: int, style_strength: float = 1.0) -> torch.Tensor:
        """Run the left-padded prompt (through FastDecoder's own weights) and move its cache
        here; returns the last position's logits."""
        prompt = FastDecoder(self.model, "own")
        n, width = ids.shape
        logits = prompt.start(ids, attn, style_ids, width, style_strength)
        lengths = attn.sum(-1)
        size = self.wte.shape[1] // self.heads
        # zeros, not empty: the attention reads only each row's filled part, but a NaN left
        # in unused memory must not be able to reach a sum
        self.keys = [np.zeros((n, self.heads, max_len, size), np.float32)
                     for _ in range(self.layers)]
        self.values = [np.zeros_like(k) for k in self.keys]
        for layer, cache in enumerate(prompt.cache):
            for row in range(n):
                have = int(lengths[row])
                kv = cache[:, row, :, width - have:width].numpy()
                self.keys[layer][row, :, :have] = kv[0]
                self.values[layer][row, :, :have] = kv[1]
        self.lengths = lengths.numpy().astype(np.int32)
        self.pos = (prompt.pos[:, -1].numpy() + 1).astype(np.int64)  # each row's next position
        self.style = prompt.style[:, 0].float().numpy()
        self._bind()
        return logits

    def _bind(self) -> None:
        n = len(self.lengths)
        self.x = np.zeros((n, self.wte.shape[1]), np.float32)
        self.seqlens = np.zeros(n, np.int32)
        self.total = np.zeros((), np.int32)
        vocab = self.wte.shape[0]
        self.logits = np.zeros((n, vocab), np.float32)
        self.allowed = np.ones((n, vocab), np.bool_)
        self.bias = np.zeros((n, vocab), np.float32)
        self.u = np.full((n, 1), 0.5, np.float32)
        self.temperature = np.ones((), np.float32)
        self.use_top_k, self.top_k = np.zeros((), np.bool_), np.array([vocab], np.int64)
        self.use_top_p, self.top_p = np.zeros((), np.bool_), np.ones((), np.float32)
        self.masked = np.zeros((n, vocab), np.float32)
        self.token = np.zeros((n, 1), np.int64)
        io = self.io = self.session.io_binding()

        def bind(name: str, array: np.ndarray, output: bool = False) -> None:
            (io.bind_output if output else io.bind_input)(
                name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)

        bind("x", self.x)
        bind("seqlens_k", self.seqlens)
        bind("total", self.total)
        bind("logits", self.logits, output=True)
        for name in ("allowed", "bias", "u", "temperature", "use_top_k", "top_k", "use_top_p",
                     "top_p"):
            bind(name, getattr(self, name))
        bind("masked", self.masked, output=True)
        bind("token", self.token, output=True)
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            bind(f"past_key{i}", k)
            bind(f"past_value{i}", v)
            bind(f"key{i}", k, output=True)  # the same memory: appended in place
            bind(f"value{i}", v, output=True)

    def keep(self, rows: torch.Tensor) -> None:
        """Drop finished rows: later steps compute only `rows` (indices into the live rows)."""
        take, used = rows.numpy(), int(self.lengths.max())
        self.keys = [_take(k, take, used) for k in self.keys]
        self.values = [_take(v, take, used) for v in self.values]
        self.lengths, self.pos, self.style = self.lengths[take], self.pos[take], self.style[take]
        self._bind()

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per live row; returns the logits after it."""
        self._run(ids)
        return torch.from_numpy(self.logits.copy())  # the buffer is the next step's output

    def sample(self, ids: torch.Tensor, allowed: torch.Tensor, bias: torch.Tensor | None,
               u: torch.Tensor, temperature: float, top_k: int,
               top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per live row and draw the next in the same call, as `sampling.sample`
        draws it: `allowed` the grammar's masks, `bias` the rows to add (None: none), `u` one
        uniform number in (0, 1] per row. Returns the tokens [n, 1] and the masked logits the
        draw started from (what `sample`'s `observe` sees)."""
        vocab = self.wte.shape[0]
        self.allowed[:] = allowed.numpy()
        if bias is None:
            self.bias.fill(0.0)
        else:
            self.bias[:] = bias.numpy()
        self.u[:] = u.numpy()
        self.temperature[()] = max(temperature, 1e-5)
        self.use_top_k[()] = bool(top_k and top_k < vocab)
        self.top_k[0] = top_k if self.use_top_k else vocab
        self.use_top_p[()] = 0 < top_p < 1
        self.top_p[()] = top_p
        self._run(ids)
        return torch.from_numpy(self.token.copy()), torch.from_numpy(self.masked.copy())

    def _run(self, ids: torch.Tensor) -> None:
        np.add(self.wte[ids[:, 0].numpy()], self.wpe[self.pos], out=self.x)
        self.x += self.style
        self.seqlens[:] = self.lengths  # GroupQueryAttention's seqlens_k: total length - 1
        self.total[()] = int(self.lengths.max()) + 1
        self.session.run_with_iobinding(self.io)
        self.lengths += 1
        self.pos += 1
