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
import weakref

import numpy as np
import torch

from .sampling import FastDecoder


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
    inits, nodes = [], []

    def weight(name: str, value) -> str:
        array = value.detach().cpu().float().numpy() if torch.is_tensor(value) else value
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(kind: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        outputs = outputs or [f"{kind}_{len(nodes)}"]
        domain = "com.microsoft" if kind == "GroupQueryAttention" else ""
        nodes.append(helper.make_node(kind, inputs, outputs, domain=domain, **attrs))
        return outputs[0]

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

    # The sampler, as `sampling.sample` and `warp` and `draw` do it in torch, op for op: the
    # bias rows added and the grammar's mask applied, then temperature, top-k, top-p (over a
    # full sort: a sort in here costs what the 64-candidate shortcut saves in torch) and the
    # inverse-CDF draw with the caller's uniform number. Off is passed as values that change
    # nothing: temperature 1, k = the vocabulary, top-p 2.
    inputs += [tensor("allowed", TensorProto.BOOL, ["n", vocab]),
               tensor("bias", TensorProto.FLOAT, ["n", vocab]),
               tensor("u", TensorProto.FLOAT, ["n", 1]),
               tensor("temperature", TensorProto.FLOAT, []),
               tensor("top_k", TensorProto.INT64, [1]),
               tensor("top_p", TensorProto.FLOAT, [])]
    outputs += [tensor("masked", TensorProto.FLOAT, ["n", vocab]),
                tensor("token", TensorProto.INT64, ["n", 1])]
    minus_inf = weight("minus_inf", np.array(-np.inf, dtype=np.float32))
    last = weight("last", np.array([-1], dtype=np.int64))
    axis = weight("axis", np.array(-1, dtype=np.int64))
    op("Where", ["allowed", op("Add", ["logits", "bias"]), minus_inf], ["masked"])
    warm = op("Div", ["masked", "temperature"])
    top = op("TopK", [warm, "top_k"], ["top_values", "top_order"], axis=-1)
    kth = op("ReduceMin", [top, last], keepdims=1)  # the k-th largest
    warm = op("Where", [op("Less", [warm, kth]), minus_inf, warm])
    best = op("TopK", [op("Softmax", [warm], axis=-1),
                       weight("vocab", np.array([vocab], dtype=np.int64))],
              ["best", "order"], axis=-1)
    order = "order"
    drop = op("GreaterOrEqual", [op("Sub", [op("CumSum", [best, axis]), best]), "top_p"])
    none_kept = op("ConstantOfShape", [op("Shape", ["masked"])])  # zeros, [n, vocab]
    kept = op("ScatterElements", [none_kept, order,
                                  op("Cast", [op("Not", [drop])], to=TensorProto.FLOAT)],
              axis=-1)
    warm = op("Where", [op("Cast", [kept], to=TensorProto.BOOL), warm, minus_inf])
    cdf = op("CumSum", [op("Softmax", [warm], axis=-1), axis])
    total = op("ReduceMax", [cdf, last], keepdims=1)  # the cdf's last value
    below = op("Cast", [op("Less", [cdf, op("Mul", ["u", total])])], to=TensorProto.INT64)
    op("Min", [op("ReduceSum", [below, last], keepdims=1),
               weight("top_token", np.array([vocab - 1], dtype=np.int64))], ["token"])
    graph = helper.make_graph(nodes, "drumgen_step", inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20),
                                                    helper.make_opsetid("com.microsoft", 1)])
    proto.ir_version = 10
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def session(model):
    """The model's step session, built once (about 0.1 s) and again when any weight changes
    in place (as training does), on the calling thread's torch thread count."""
    import onnxruntime as ort

    tensors = list(model.parameters())
    key = (tuple((w.data_ptr(), w._version) for w in tensors), torch.get_num_threads())
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
        self.top_k = np.array([vocab], np.int64)
        self.top_p = np.full((), 2.0, np.float32)
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
        for name in ("allowed", "bias", "u", "temperature", "top_k", "top_p"):
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
        take = rows.numpy()
        self.keys = [k[take] for k in self.keys]
        self.values = [v[take] for v in self.values]
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
        self.top_k[0] = top_k if 0 < top_k < vocab else vocab
        self.top_p[()] = top_p if 0 < top_p < 1 else 2.0
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
