"""Inference rewrites: a trained ReCoNet turned into a faster module computing the same numbers.

:func:`optimize_for_inference` makes the copy the video pipeline runs on a CPU; the rewrites it uses are exact
(up to float rounding) and each is a module of its own, so that notebook 03 can show them one at a time:

* :class:`SubPixelUpsampleConv`: nearest x2 upsampling + 3x3 convolution computed on the small grid;
* :class:`SpaceToDepthConv`: the last 9x9 convolution to 3 channels as a 3x3 convolution on a 4x smaller grid;
* :class:`WinogradConvLayer`: 3x3 convolutions by Winograd's ``F(4x4, 3x3)`` (:mod:`reconet_lib.winograd`);

and on a CPU it runs the frames of a batch as single-threaded streams, one per core (:class:`InferenceReCoNet`).
"""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import winograd
from .errors import UserInputError
from .memory import retain_freed_memory
from .network import ConvLayer, ReCoNet, ResidualBlock, UpsampleConv, instance_norm, reflect_pad
from .precision import WINOGRAD_MIN_CHANNELS, inference_dtype, inference_streams, inference_winograd, parse_device

def space_to_depth(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``F.pixel_unshuffle(x, factor)`` written straight into channels-last memory (one copy instead of two).

    ``(B, C, H, W) -> (B, C * f * f, H / f, W / f)`` with ``H, W`` multiples of ``f``; output channel
    ``c * f * f + qy * f + qx`` holds pixel ``(f * i + qy, f * j + qx)`` of channel ``c``, as in ``pixel_unshuffle``.
    """
    b, c, h, w = x.shape
    f = factor
    blocks = x.permute(0, 2, 3, 1).reshape(b, h // f, f, w // f, f, c).permute(0, 1, 3, 5, 2, 4)
    return blocks.reshape(b, h // f, w // f, c * f * f).permute(0, 3, 1, 2)


class SpaceToDepthConv(nn.Module):
    """A stride-1 convolution with few output channels, rewritten to run fast: the same numbers, other layout.

    A ``k x k`` convolution to 3 channels (ReCoNet's last layer) gives matrix-multiply kernels almost nothing to
    work with (3 output channels), so it runs at a fraction of the machine's speed. Cutting the padded input
    into ``f x f`` blocks (``pixel_unshuffle``) turns it into a ``K x K`` convolution (``K = (f + k - 2) // f + 1``)
    from ``f*f*C_in`` to ``f*f*C_out`` channels on an ``f`` times smaller grid, followed by ``pixel_shuffle``.
    The weights are the original ones, scattered: output sub-pixel ``(py, px)`` of a block reads input sub-pixel
    ``(qy, qx)`` of the block ``(by, bx)`` further with the original tap ``(f*by + qy - py, f*bx + qx - px)``
    (zero where that tap is outside the ``k x k`` kernel). This does ``f*f*K*K / (k*k)`` times the arithmetic
    (1.78x for ``k = 9, f = 4``), but at full matrix-multiply speed; on a CPU it is 2-3x faster.

    ``(B, C_in, H, W)`` (unpadded; reflection padding ``k // 2`` happens inside) ``-> (B, C_out, H, W)``,
    computed in the dtype of ``weight``; the bias is added in (at least) float32, the result's dtype.
    """

    def __init__(self, layer: ConvLayer, factor: int = 4) -> None:
        super().__init__()
        conv = layer.conv
        if layer.norm is not None or layer.relu or conv.stride != (1, 1) or conv.bias is None:
            raise UserInputError("SpaceToDepthConv rewrites only the last ReCoNet layer (no norm, no ReLU, stride 1)")
        weight = conv.weight.detach()
        c_out, c_in, k, _ = weight.shape
        f = factor
        big_k = (f + k - 2) // f + 1
        scattered = weight.new_zeros(c_out, f, f, c_in, f, f, big_k, big_k)
        for py in range(f):
            for px in range(f):
                for qy in range(f):
                    for qx in range(f):
                        for by in range(big_k):
                            for bx in range(big_k):
                                dy, dx = f * by + qy - py, f * bx + qx - px
                                if 0 <= dy < k and 0 <= dx < k:
                                    scattered[:, py, px, :, qy, qx, by, bx] = weight[:, :, dy, dx]
        self.factor = f
        self.padding = k // 2
        # buffers, not parameters: this is an inference-only rewrite of trained weights
        self.register_buffer("weight", scattered.reshape(c_out * f * f, c_in * f * f, big_k, big_k))
        self.register_buffer("bias", conv.bias.detach().float().repeat_interleave(f * f).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p, f = self.padding, self.factor
        # reflection padding as in ConvLayer, then zeros up to a multiple of f (they only feed cropped outputs)
        x = reflect_pad(x, p, p, p, p)
        if x.shape[-1] % f or x.shape[-2] % f:
            x = F.pad(x, (0, -x.shape[-1] % f, 0, -x.shape[-2] % f))
        z = F.conv2d(space_to_depth(x.to(self.weight.dtype), f), self.weight)
        z = z.to(torch.promote_types(z.dtype, torch.float32))
        return F.pixel_shuffle(z + self.bias.to(z.dtype), f)[..., :h, :w]


class SubPixelUpsampleConv(nn.Module):
    """An :class:`UpsampleConv` rewritten to run on the small grid: the same numbers, without the upsampled copy.

    Nearest x2 upsampling makes every 2x2 block of the upsampled image four copies of one input pixel, and
    reflection padding by one pixel of that image repeats its border rows and columns, which are copies of the
    input's border: so output pixel ``(2i + py, 2j + px)`` of the 3x3 convolution reads only input rows
    ``i - 1 + py .. i + py`` and columns ``j - 1 + px .. j + px`` of the input padded by *replication*, each with
    a sum of original taps (``py = 0``: row offset -1 gets tap 0, offset 0 gets taps 1 + 2; ``py = 1``: offset 0
    gets taps 0 + 1, offset +1 gets tap 2; the same along x). One 3x3 convolution of the replicate-padded input to
    ``4 * C_out`` channels (the unused taps are zero) followed by ``pixel_shuffle(2)`` computes all four phases:
    the same arithmetic as the original, but on a 4 times smaller grid, and no upsampled tensor or padding of it
    is ever written. Instance normalisation and ReLU follow as before.

    ``(B, C_in, H, W) -> (B, C_out, 2H, 2W)``, in the dtype of ``weight``.
    """

    def __init__(self, layer: UpsampleConv) -> None:
        super().__init__()
        inner = getattr(layer, "conv", None) if isinstance(layer, UpsampleConv) else None
        if inner is None or inner.conv.kernel_size != (3, 3) or inner.conv.stride != (1, 1) or inner.conv.bias is not None:
            raise UserInputError("SubPixelUpsampleConv rewrites ReCoNet's upsampling layers (3x3, stride 1, no bias)")
        w = inner.conv.weight.detach()
        c_out, c_in = w.shape[:2]
        # taps[p][a]: the original taps (0, 1, 2) that padded-input offset a (0, 1, 2 = -1, 0, +1) gets in phase p
        taps = (((0,), (1, 2), ()), ((), (0, 1), (2,)))
        phased = w.new_zeros(c_out, 2, 2, c_in, 3, 3)
        for py in range(2):
            for px in range(2):
                for a in range(3):
                    for b in range(3):
                        for dy in taps[py][a]:
                            for dx in taps[px][b]:
                                phased[:, py, px, :, a, b] += w[:, :, dy, dx]
        self.register_buffer("weight", phased.reshape(4 * c_out, c_in, 3, 3))  # channel c*4 + 2*py + px
        self.norm, self.relu = inner.norm, inner.relu
        self.register_buffer("winograd_weight", None)

    def use_winograd(self) -> None:
        """Compute the convolution by :mod:`reconet_lib.winograd` from now on (float32 CPUs; see there)."""
        self.winograd_weight = winograd.transform_weight(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        if self.winograd_weight is not None:
            z = winograd.conv3x3_valid(x, self.winograd_weight)
        else:
            z = F.conv2d(x, self.weight)
        z = F.pixel_shuffle(z, 2)
        if self.norm is not None:
            z = instance_norm(z, self.norm.weight, self.norm.bias, self.norm.eps)
        return F.relu(z) if self.relu else z


class WinogradConvLayer(nn.Module):
    """A 3x3, stride-1 :class:`ConvLayer` computed by Winograd's ``F(4x4, 3x3)``: 4 times fewer multiplications.

    Same padding, normalisation and ReLU as the layer it replaces; the convolution differs from the direct one by
    float rounding only (about 1e-5 of its scale in float32, see :mod:`reconet_lib.winograd`). Float32/float64.
    ``(B, C_in, H, W) -> (B, C_out, H, W)``, channels-last.
    """

    def __init__(self, layer: ConvLayer) -> None:
        super().__init__()
        conv = layer.conv
        if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.bias is not None:
            raise UserInputError("WinogradConvLayer rewrites 3x3, stride-1 ReCoNet layers without bias")
        self.register_buffer("weight", winograd.transform_weight(conv.weight))
        self.norm, self.relu = layer.norm, layer.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = winograd.conv3x3_valid(reflect_pad(x, 1, 1, 1, 1), self.weight)
        if self.norm is not None:
            z = instance_norm(z, self.norm.weight, self.norm.bias, self.norm.eps)
        return F.relu(z) if self.relu else z


class InferenceReCoNet(nn.Module):
    """A ReCoNet prepared for fast inference by :func:`optimize_for_inference` (see there).

    ``forward(x)``: ``(B, 3, H, W)`` images in [0, 1] (any float dtype, any memory format) ->
    ``(B, 3, H, W)`` float32 in [0, 1] (eval-mode output, clamped). No gradients.

    With ``streams > 1`` a batch is cut into that many parts, run at the same time in worker threads that each
    use ``threads_per_stream`` intra-op threads (see :func:`reconet_lib.precision.inference_streams`); the
    result is the same as one call on the whole batch.
    """

    def __init__(self, model: ReCoNet, dtype: torch.dtype, device: torch.device, space_to_depth: bool,
                 winograd_min_channels: int | None = None, streams: int = 1, threads_per_stream: int = 1) -> None:
        super().__init__()
        self.streams, self.threads_per_stream = max(1, int(streams)), max(1, int(threads_per_stream))
        self._pool: ThreadPoolExecutor | None = None
        net = copy.deepcopy(model).eval().requires_grad_(False).to(device=device, dtype=dtype)
        # the upsampling layers work on the small grid (exact rewrite); see SubPixelUpsampleConv
        net.decoder = nn.Sequential(*(SubPixelUpsampleConv(m) if isinstance(m, UpsampleConv) else m for m in net.decoder))
        if winograd_min_channels is not None:  # Winograd for 3x3 layers with min(C_in, C_out) at least this
            for block in net.encoder:
                if isinstance(block, ResidualBlock) and block.conv1.conv.in_channels >= winograd_min_channels:
                    block.conv1, block.conv2 = WinogradConvLayer(block.conv1), WinogradConvLayer(block.conv2)
            for layer in net.decoder:
                if isinstance(layer, SubPixelUpsampleConv) and min(layer.weight.shape[:2]) >= winograd_min_channels:
                    layer.use_winograd()
        self.last = None
        if space_to_depth:
            self.last = SpaceToDepthConv(net.decoder[-1])
            self.last.weight = self.last.weight.to(device, dtype).contiguous(memory_format=torch.channels_last)
            self.last.bias = self.last.bias.to(device)  # stays float32
            net.decoder = net.decoder[:-1]
        self.net = net.to(device=device, dtype=dtype, memory_format=torch.channels_last)
        self.config = model.config
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ReCoNet.check_image(x)
        parts = min(self.streams, x.shape[0])
        if parts <= 1:
            return self._run(x)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="reconet-stream",
                                            initializer=torch.set_num_threads, initargs=(self.threads_per_stream,))
        inference = torch.is_inference_mode_enabled()

        def run(chunk: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(inference), torch.no_grad():  # worker threads do not inherit the caller's mode
                return self._run(chunk)
        return torch.cat(list(self._pool.map(run, x.tensor_split(parts))))

    def __getstate__(self):  # a thread pool cannot be copied or pickled; a copy makes its own
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = x.to(dtype=self.dtype).contiguous(memory_format=torch.channels_last)
        features = self.net.encode(x)
        if self.last is None:
            z = self.net.decoder(features).float()
        else:
            z = self.last(self.net.decoder(features))
        z = z[..., :h, :w]
        return (0.5 + (0.5 * self.config.output_scale) * torch.tanh(z)).clamp(0.0, 1.0)


def optimize_for_inference(model: ReCoNet, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                           compile: bool = False, space_to_depth: bool | None = None,
                           use_winograd: bool | None = None, streams: int | None = None) -> nn.Module:
    """The fastest way we found to run a trained ReCoNet on ``device`` (the model itself is left untouched).

    What it does:

    * the compute dtype that :func:`reconet_lib.precision.inference_dtype` chooses for ``device``: ``float16``
      on CUDA, ``bfloat16`` on CPUs where it is native and measured faster, ``float32`` on other CPUs (where
      bfloat16 is emulated and many times slower); the output head stays float32;
    * channels-last memory layout (what oneDNN and cuDNN convolutions want; no layout conversions in between);
    * the two upsampling layers rewritten by :class:`SubPixelUpsampleConv` (the same arithmetic on a 4 times
      smaller grid, no upsampled copy written);
    * on the CPU, the last 9x9 convolution to 3 channels rewritten by :class:`SpaceToDepthConv`;
    * on an x86 CPU without AVX-512 in float32, the residual blocks' and the upsampling layers' 3x3 convolutions
      (those at least 64 channels wide) computed by Winograd's ``F(4x4, 3x3)`` (:class:`WinogradConvLayer`, :mod:`reconet_lib.winograd`): a
      quarter of the multiplications, the same result up to float rounding;
    * on a CPU, the C allocator told to reuse freed memory (:func:`reconet_lib.memory.retain_freed_memory`, a
      process-wide setting): large tensors then no longer cost fresh, page-faulting memory on every frame;
    * on a CPU, a batch of several frames run as that many *streams* at once, one frame per core, each with one
      intra-op thread (:func:`reconet_lib.precision.inference_streams`): no thread waits for another inside a
      frame, so no time is lost at the ~100 synchronisation points per frame (measured on the 2-core machine
      of ``docs/results.md``, paper model at 640x360, under load from other programs: 1.7 s per frame as two
      single-threaded streams vs 4.4 s as one two-threaded one);
    * ``compile=True``: ``torch.compile`` with weight freezing, which fuses padding, instance normalisation and
      ReLU into few passes over memory. The first call per input size compiles (about a minute on a small CPU);
      needs a C++ compiler on the CPU and Triton on CUDA.

    Args:
        model: a :class:`ReCoNet` (any mode; the copy is put in eval mode).
        device: where to run (default: the model's device).
        dtype: compute dtype (default: the policy's choice, see above). Passing ``torch.bfloat16`` on a CPU
            without native bfloat16 is allowed but slow.
        compile: wrap the result in ``torch.compile``.
        space_to_depth: rewrite the last layer (default: on for CPU, off for CUDA).
        use_winograd: Winograd convolutions. None (default): where :func:`reconet_lib.precision.inference_winograd`
            says they pay (float32 on an x86 CPU whose convolutions run without AVX-512, layers at least
            :data:`~reconet_lib.precision.WINOGRAD_MIN_CHANNELS` wide); True: every residual and upsampling
            layer; False: none. True needs float32 or float64.
        streams: frames of a batch run at the same time (default: the policy's, one per intra-op thread on a
            CPU, 1 on CUDA and with ``compile=True``); each gets ``torch.get_num_threads() // streams`` threads.
    Returns:
        a module mapping ``(B, 3, H, W)`` [0, 1] images to float32 ``(B, 3, H, W)`` in [0, 1]; call it under
        ``torch.inference_mode()``. Outputs match ``model.eval()(x)`` to about 1e-2 in half precision and to
        about 1e-3 in float32 (rounding through the layers, with or without Winograd; far below 1/255).
    """
    if not isinstance(model, ReCoNet):
        raise UserInputError(f"optimize_for_inference expects a ReCoNet; got {type(model).__name__}")
    device = parse_device(device) if device is not None else next(model.parameters()).device
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise UserInputError(f"dtype must be a torch dtype such as torch.float32 or torch.bfloat16; got {dtype!r}")
    if dtype is None:
        dtype = inference_dtype(device)
    if space_to_depth is None:
        space_to_depth = device.type == "cpu"
    if use_winograd and dtype not in (torch.float32, torch.float64):
        raise UserInputError(f"Winograd convolutions need float32 or float64, not {dtype}; pass dtype=torch.float32 "
                             "(or use_winograd=None to let the policy decide)")
    if use_winograd is None:  # the policy, layer by layer: only layers wide enough to gain
        min_channels = WINOGRAD_MIN_CHANNELS if inference_winograd(device, dtype) else None
    else:
        min_channels = 0 if use_winograd else None
    if device.type == "cpu":
        retain_freed_memory()
    if streams is not None and (isinstance(streams, bool) or not isinstance(streams, int) or streams < 1):
        raise UserInputError(f"streams must be a positive integer (frames run at the same time); got {streams!r}")
    policy_streams, per_stream = inference_streams(device)
    if streams is None and compile:
        streams = 1  # the compiled graph is the whole batch; threads around it would only break it up
    streams = policy_streams if streams is None else streams
    per_stream = per_stream if streams == policy_streams else max(1, torch.get_num_threads() // streams)
    fast = InferenceReCoNet(model, dtype=dtype, device=device, space_to_depth=space_to_depth,
                            winograd_min_channels=min_channels, streams=streams, threads_per_stream=per_stream)
    if compile:
        return torch.compile(fast, options={"freezing": True})
    return fast
