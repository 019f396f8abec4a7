"""What readers of an atomically written file see: only ever a complete version, never a partial one."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import List

from ds2ir import atomic

SIZE = 1 << 18  # 256 KiB: a copy of it is not one instant


def version(index: int) -> bytes:
    return bytes([index % 251]) * SIZE


def test_a_reader_of_the_previous_file_keeps_reading_it_whole(tmp_path: Path) -> None:
    """The new file replaces the name; the previous file's bytes are never overwritten in place."""
    final = tmp_path / "report.json"
    atomic.write_bytes(final, version(1))
    with open(final, "rb") as reader:
        atomic.write_bytes(final, version(2)[: SIZE // 2])
        assert reader.read() == version(1)
    assert final.read_bytes() == version(2)[: SIZE // 2]
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_final_file_is_complete_at_every_instant(tmp_path: Path) -> None:
    final = tmp_path / "output_graph.bin"
    atomic.write_bytes(final, version(0))
    seen: List[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                data = final.read_bytes()
            except FileNotFoundError:
                seen.append("missing")
                continue
            if len(data) != SIZE or data != data[:1] * SIZE:
                seen.append(f"partial ({len(data)} bytes)")

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for index in range(1, 200):
            with atomic.atomic_path(final) as tmp:
                with open(tmp, "wb") as handle:
                    for start in range(0, SIZE, SIZE // 8):  # written in pieces, as np.savez does
                        handle.write(version(index)[start:start + SIZE // 8])
    finally:
        stop.set()
        reader.join()
    assert seen == []
    assert final.read_bytes() == version(199)
