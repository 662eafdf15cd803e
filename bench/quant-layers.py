#!/usr/bin/env python3
# Which matrices of a Qwen2 model int4 weights hurt most, measured outside the engine: a float64 NumPy forward pass
# (the golden's math: RMSNorm, RoPE, causal GQA attention, SwiGLU) whose weights are replaced by their quantized
# values, compared by the worst-position cosine of final_norm_hidden. The measurements behind q4's choice of the
# first layers' MLP in int8 (src/model/quant.ts, README.md "Quantized weights"); numbers of the runs are there.
#
#   python3 bench/quant-layers.py golden ../shared/golden    # the shared sets: formats and layer choices
#   python3 bench/quant-layers.py random 4 8                 # random models of the golden init with 4 and 8 layers
#
# Needs NumPy only. The unquantized pass reproduces the golden final_norm_hidden (cosine 1 to 1e-9), printed first.
import json, struct, sys
import numpy as np

def load_safetensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header, base, out = json.loads(b[8:8 + n]), 8 + n, {}
    for name, t in header.items():
        if name == '__metadata__':
            continue
        s, e = t['data_offsets']
        raw = b[base + s:base + e]
        if t['dtype'] == 'I32':
            out[name] = np.frombuffer(raw, dtype=np.int32).reshape(t['shape'])
            continue
        a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32) if t['dtype'] == 'BF16' \
            else np.frombuffer(raw, dtype=np.float32)
        out[name] = a.reshape(t['shape']).astype(np.float64)
    return out

def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

def forward(W, cfg, ids, quantize):
    """final_norm_hidden of `ids`; quantize(name, weight, layers) gives the weight a matrix is run with."""
    H, nh, nkv, L = cfg['hidden_size'], cfg['num_attention_heads'], cfg['num_key_value_heads'], cfg['num_hidden_layers']
    d, eps, T = H // nh, cfg['rms_norm_eps'], len(ids)
    h = W['model.embed_tokens.weight'][ids]
    angle = np.outer(np.arange(T), 1.0 / (cfg['rope_theta'] ** (np.arange(0, d, 2) / d)))
    cos, sin = np.cos(np.concatenate([angle, angle], -1))[:, None], np.sin(np.concatenate([angle, angle], -1))[:, None]
    rope = lambda x: x * cos + np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1) * sin
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        p = f'model.layers.{l}.'
        def linear(name, x):
            y = x @ quantize(p + name, W[p + name + '.weight'], L).T
            return y + W[p + name + '.bias'] if p + name + '.bias' in W else y
        x = rmsnorm(h, W[p + 'input_layernorm.weight'], eps)
        q = rope(linear('self_attn.q_proj', x).reshape(T, nh, d))
        k = np.repeat(rope(linear('self_attn.k_proj', x).reshape(T, nkv, d)), nh // nkv, 1)
        v = np.repeat(linear('self_attn.v_proj', x).reshape(T, nkv, d), nh // nkv, 1)
        s = np.einsum('thd,shd->hts', q, k) / np.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        h = h + linear('self_attn.o_proj', np.einsum('hts,shd->thd', s / s.sum(-1, keepdims=True), v).reshape(T, H))
        x = rmsnorm(h, W[p + 'post_attention_layernorm.weight'], eps)
        gate, up = linear('mlp.gate_proj', x), linear('mlp.up_proj', x)
        h = h + linear('mlp.down_proj', gate / (1 + np.exp(-gate)) * up)
    return rmsnorm(h, W['model.norm.weight'], eps)

def worst_cosine(a, b):
    return ((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).min()

# Weight formats, on groups of 32 along K (the last group zero-padded), scales rounded to f16 as r3gpu stores them.
def grouped(fmt):
    def apply(w):
        rows, k = w.shape
        g = np.concatenate([w, np.zeros((rows, -k % 32))], 1).reshape(rows, -1, 32)
        return fmt(g).reshape(rows, -1)[:, :k]
    return apply
f16 = lambda x: x.astype(np.float16).astype(np.float64)
nonzero = lambda d: np.where(d == 0, 1, d)
def q8_0(g):
    d = f16(np.abs(g).max(-1, keepdims=True) / 127)
    return np.clip(np.round(g / nonzero(d)), -127, 127) * d
def q4_0_scaled(g, c=1.0):
    m = np.take_along_axis(g, np.abs(g).argmax(-1)[..., None], -1)
    d = f16(m / -8 * c)
    return np.clip(np.round(g / nonzero(d)), -8, 7) * d
def q4_least_squares(g):
    best = np.stack([q4_0_scaled(g, c) for c in np.linspace(0.6, 1.1, 51)])
    return np.take_along_axis(best, ((best - g) ** 2).sum(-1, keepdims=True).argmin(0)[None], 0)[0]
NF4 = np.array([-1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
                0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0])
def nf4(g):
    s = f16(np.abs(g).max(-1, keepdims=True))
    return NF4[np.abs((g / nonzero(s))[..., None] - NF4).argmin(-1)] * s
def q4_1(g):
    lo = g.min(-1, keepdims=True)
    d, m = f16((g.max(-1, keepdims=True) - lo) / 15), f16(lo)
    return np.clip(np.round((g - m) / nonzero(d)), 0, 15) * d + m
Q8, Q4 = grouped(q8_0), grouped(q4_0_scaled)

def policy(mlp_q8_layer, mlp=Q4, rest=Q8):
    """MLP matrices in `mlp` but in the layers mlp_q8_layer(l, L) picks (Q8); every other matrix in `rest`."""
    def quantize(name, w, layers):
        if '.mlp.' not in name:
            return rest(w)
        return Q8(w) if mlp_q8_layer(int(name.split('.')[2]), layers) else mlp(w)
    return quantize

def golden(folder):
    sets = ['tiny-public', 'small-public']
    data = []
    for s in sets:
        d = f'{folder}/{s}/'
        cfg, g = json.load(open(d + 'config.json')), json.load(open(d + 'golden.json'))
        ref = load_safetensors(d + 'golden.safetensors')
        data.append((load_safetensors(d + 'model.safetensors'), cfg,
                     [(np.array(q['input_ids']), ref[f'seq{i}.final_norm_hidden']) for i, q in enumerate(g['sequences'])]))
    keep = lambda name, w, layers: w
    noise_rng = np.random.default_rng(0)
    noise = lambda e: lambda w: w + noise_rng.standard_normal(w.shape) * np.sqrt((w * w).mean()) * e
    runs = [
        ('unquantized', keep),
        ('q4 as before: every MLP Q4_0, the rest Q8_0', policy(lambda l, L: False)),
        ('every MLP Q4_0, the rest unquantized', policy(lambda l, L: False, rest=lambda w: w)),
        ('every MLP, least-squares scale', policy(lambda l, L: False, grouped(q4_least_squares), lambda w: w)),
        ('every MLP NF4', policy(lambda l, L: False, grouped(nf4), lambda w: w)),
        ('every MLP Q4_1 (zero point)', policy(lambda l, L: False, grouped(q4_1), lambda w: w)),
        ('every MLP + Gaussian noise of half Q4_0 RMS error', policy(lambda l, L: False, noise(0.04), lambda w: w)),
        ('q4: the first layer MLP Q8_0', policy(lambda l, L: l < -(-L // 32))),
        ('the last layer MLP Q8_0', policy(lambda l, L: l == L - 1)),
    ]
    print('worst-position cosine of final_norm_hidden to the golden:', ' / '.join(sets))
    for name, quantize in runs:
        out = []
        for W, cfg, seqs in data:
            out.append(min(worst_cosine(forward(W, cfg, ids, quantize), want) for ids, want in seqs))
        print(f'  {name}: ' + ' / '.join(f'{c:.4f}' for c in out), flush=True)

def bf16(a):
    u = a.astype(np.float32).view(np.uint32)
    return (((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16).view(np.float32).astype(np.float64)

def random_model(L, seed, H=64, I=176, nh=4, nkv=2, V=2000):
    """A model of the golden's init (golden.json "reference.init") at tiny-public's widths, L layers."""
    r, d, W = np.random.default_rng(seed), H // nh, {}
    W['model.embed_tokens.weight'] = bf16(r.standard_normal((V, H)) * 0.2)
    for l in range(L):
        p = f'model.layers.{l}.'
        for n in ('input_layernorm', 'post_attention_layernorm'):
            W[p + n + '.weight'] = bf16(1 + 0.1 * r.standard_normal(H))
        for n, rows, k, std in [('self_attn.q_proj', nh * d, H, 1.5), ('self_attn.k_proj', nkv * d, H, 1.5),
                                ('self_attn.v_proj', nkv * d, H, 1), ('self_attn.o_proj', H, nh * d, 1),
                                ('mlp.gate_proj', I, H, 1), ('mlp.up_proj', I, H, 1), ('mlp.down_proj', H, I, 1)]:
            W[p + n + '.weight'] = bf16(r.standard_normal((rows, k)) * std / np.sqrt(k))
            if n in ('self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'):
                W[p + n + '.bias'] = bf16(0.1 * r.standard_normal(rows))
    W['model.norm.weight'] = bf16(1 + 0.1 * r.standard_normal(H))
    return W, dict(hidden_size=H, num_attention_heads=nh, num_key_value_heads=nkv, num_hidden_layers=L,
                   rms_norm_eps=1e-6, rope_theta=1e6)

def random(layer_counts):
    choices = [('every MLP Q4_0', lambda l, L: False), ('every MLP Q8_0', lambda l, L: True),
               ('the first layer MLP Q8_0', lambda l, L: l < 1), ('the first two', lambda l, L: l < 2),
               ('the first half', lambda l, L: l < L / 2), ('the last half', lambda l, L: l >= L / 2)]
    print('worst-position cosine of final_norm_hidden to the unquantized model (the rest Q8_0), 2 seeds:')
    for L in layer_counts:
        models = []
        for seed in (0, 1):
            W, cfg = random_model(L, seed)
            seqs = [np.random.default_rng(100 + seed).integers(0, 2000, T) for T in (7, 33, 300)]
            models.append((W, cfg, [(ids, forward(W, cfg, ids, lambda n, w, layers: w)) for ids in seqs]))
        for name, pick in choices:
            out = [min(worst_cosine(forward(W, cfg, ids, policy(pick)), want) for ids, want in seqs) for W, cfg, seqs in models]
            print(f'  {L} layers, {name}: ' + ' / '.join(f'{c:.4f}' for c in out), flush=True)

if __name__ == '__main__':
    if len(sys.argv) >= 3 and sys.argv[1] == 'golden':
        golden(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == 'random':
        random([int(a) for a in sys.argv[2:]])
    else:
        sys.exit('usage: quant-layers.py golden GOLDEN_DIR | random LAYERS...')
