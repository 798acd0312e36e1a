"""Windows streamed from Zarr for splits too large for memory, fast enough to feed a GPU.

Frames are read in *blocks*: the frames behind `block` consecutive window starts, a whole number of time chunks,
read straight from the Zarr array (no dask) and normalized once. The training shuffle is chunk-aware
(`chunk_aware_order`): blocks are shuffled, then taken a group at a time and the samples of a group shuffled
together, so each block is read once an epoch while a batch still mixes samples from a whole group of places in
the record. `BatchStream` knows every batch of the epoch in advance: a reader thread loads blocks in the order the
batches first need them (the next group while the current one is used, within a memory budget), a second thread
gathers each batch into (pinned, on CUDA) memory, and the consumer copies it to the device without blocking.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import xarray as xr
import zarr

from .store import reading

GROUP_BYTES = 512 * 2**20  # frames loaded per shuffle group; the next group loads meanwhile (twice this in all)
BLOCK_WINDOWS = 8          # a block holds about this many window lengths of starts (whole chunks)
PREFETCH_BATCHES = 3       # gathered batches waiting for the consumer
REUSE_GAP = 32             # a block needed again within this many batches stays loaded; later, it is read again


class FrameReader:
    """Physical frames [start, stop) of a store's `data` array as float32, read directly from Zarr when the
    dataset came from a store on disk (through xarray otherwise). Corrupt chunks become one line."""

    def __init__(self, ds: xr.Dataset):
        self.source = ds.encoding.get("source")
        self.array = ds["data"]
        self._zarr = None
        if self.source and (Path(self.source) / "data").is_dir():
            array = zarr.open_group(str(self.source), mode="r")["data"]
            if array.shape == self.array.shape:  # the store itself, not a selection of it
                self._zarr = array
        self.chunk = int(self.array.encoding.get("chunks", (256,))[0])

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if self._zarr is None:
            return self.array[start:stop].values.astype("float32", copy=False)
        with reading(self.source):
            return np.asarray(self._zarr[start:stop], dtype="float32")


def block_size(chunk: int, length: int) -> int:
    """Window starts per block: whole chunks, about BLOCK_WINDOWS window lengths."""
    return chunk * max(1, -(-BLOCK_WINDOWS * length // chunk))


def chunk_aware_order(block_of_sample: np.ndarray, group_blocks: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of the samples (numbered by position in `block_of_sample`) whose reads stay local: the
    blocks in random order, `group_blocks` at a time, the samples of each group shuffled together."""
    blocks = np.unique(block_of_sample)
    blocks = blocks[torch.randperm(blocks.size, generator=generator).numpy()]
    by_block = {int(b): np.flatnonzero(block_of_sample == b) for b in blocks}
    parts = []
    for g in range(0, blocks.size, group_blocks):
        members = np.concatenate([by_block[int(b)] for b in blocks[g:g + group_blocks]])
        parts.append(members[torch.randperm(members.size, generator=generator).numpy()])
    return torch.from_numpy(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class _Load:
    block: int
    last_batch: int


def _plan(blocks_per_batch: Sequence[np.ndarray]) -> tuple[list[_Load], list[list[int]]]:
    """Block loads in order of first need, and for each batch the loads it reads. A block whose next use
    is more than REUSE_GAP batches away is released after its last use and loaded again later."""
    loads: list[_Load] = []
    open_load: dict[int, int] = {}  # block -> index into loads of its current load
    last_seen: dict[int, int] = {}
    uses: list[list[int]] = []
    for i, blocks in enumerate(blocks_per_batch):
        mine = []
        for b in blocks.tolist():
            k = open_load.get(b)
            if k is None or i - last_seen[b] > REUSE_GAP:
                k = len(loads)
                loads.append(_Load(b, i))
                open_load[b] = k
            loads[k] = _Load(b, i)
            last_seen[b] = i
            mine.append(k)
        uses.append(mine)
    return loads, uses


class BatchStream:
    """The batches of `index_batches` (sample numbers), gathered in background threads.

    `starts`: each sample's first frame, relative to the split's first frame; `load(block)` returns the
    normalized frames of a block as a tensor whose frame 0 is the block's first start. Yields (index, frames
    (B, L, C, H, W)) on the CPU, in pinned memory when `pin`."""

    def __init__(self, index_batches: Sequence[torch.Tensor], starts: np.ndarray, block: int, length: int,
                 load: Callable[[int], torch.Tensor], max_loaded: int, pin: bool = False):
        self.index_batches = [torch.as_tensor(i, dtype=torch.int64) for i in index_batches]
        self.starts, self.block, self.length = starts, block, length
        self.load, self.max_loaded, self.pin = load, max(1, max_loaded), pin
        self.starts_per_batch = [starts[i.numpy()] for i in self.index_batches]
        self.loads, self.uses = _plan([np.unique(s // block) for s in self.starts_per_batch])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        out: queue.Queue = queue.Queue(maxsize=PREFETCH_BATCHES)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(out, stop), daemon=True, name="simcast-batches")
        worker.start()
        try:
            for _ in self.index_batches:
                item = out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    out.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simcast-read")
        try:
            self._gather_all(out, stop, reader)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            reader.shutdown(cancel_futures=True)  # reads queued ahead are not waited for
            self._put(out, stop, e)
        finally:
            reader.shutdown(wait=True, cancel_futures=True)

    def _put(self, out: queue.Queue, stop: threading.Event, item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _gather_all(self, out: queue.Queue, stop: threading.Event, reader: ThreadPoolExecutor) -> None:
        futures: dict[int, Future] = {}
        submitted = 0
        for i, index in enumerate(self.index_batches):
            # read ahead in order of first need, as far as the budget allows (always what this batch needs)
            need = max(self.uses[i], default=-1)
            while submitted < len(self.loads) and (submitted <= need or len(futures) < self.max_loaded):
                futures[submitted] = reader.submit(self.load, self.loads[submitted].block)
                submitted += 1
            frames = self._gather(i, {k: futures[k].result() for k in self.uses[i]})
            for k in self.uses[i]:
                if self.loads[k].last_batch == i:
                    del futures[k]
            if not self._put(out, stop, (index, frames)):
                return  # the consumer stopped: the reads queued ahead are cancelled on the way out

    def _gather(self, i: int, blocks: dict[int, torch.Tensor]) -> torch.Tensor:
        starts = self.starts_per_batch[i]
        first = next(iter(blocks.values()))
        batch = torch.empty((len(starts), self.length, *first.shape[1:]), dtype=first.dtype, pin_memory=self.pin)
        by_block = {self.loads[k].block: t for k, t in blocks.items()}
        for j, s in enumerate(starts.tolist()):
            b, offset = divmod(s, self.block)
            batch[j].copy_(by_block[b][offset:offset + self.length])
        return batch


class FrameCache:
    """Frames read chunk by chunk through a `FrameReader`, keeping the most recent chunks (bounded memory);
    `transform` (e.g. normalization) is applied once per chunk read."""

    def __init__(self, ds: xr.Dataset, max_chunks: int = 32, transform: Callable[[np.ndarray], np.ndarray] | None = None):
        self.read = FrameReader(ds)
        self.chunk = self.read.chunk
        self.shape = ds["data"].shape
        self.max_chunks = max_chunks
        self.transform = transform
        self._cache: dict[int, np.ndarray] = {}

    def _chunk(self, k: int) -> np.ndarray:
        if k in self._cache:
            self._cache[k] = self._cache.pop(k)  # most recent last
        else:
            frames = self.read(k * self.chunk, (k + 1) * self.chunk)
            self._cache[k] = frames if self.transform is None else self.transform(frames)
            if len(self._cache) > self.max_chunks:
                del self._cache[next(iter(self._cache))]
        return self._cache[k]

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Frames at absolute time indices idx (any shape), stacked in that shape."""
        flat = idx.reshape(-1)
        out = np.empty((flat.size, *self.shape[1:]), dtype="float32")
        for k in np.unique(flat // self.chunk):
            sel = flat // self.chunk == k
            out[sel] = self._chunk(int(k))[flat[sel] - k * self.chunk]
        return out.reshape(*idx.shape, *self.shape[1:])
