"""The README's main job runs end to end (at toy size)."""

from cald_brain.demo import main


def test_demo_converts_and_reports(capsys):
    rows = main(
        ["--hidden", "32", "--layers", "1", "--heads", "2", "--ffn", "64", "--seconds", "1", "2", "--repeats", "1"]
    )
    assert [r["seconds"] for r in rows] == [1, 2]
    assert rows[1]["frames"] > rows[0]["frames"] > 0
    assert all(r["transformer_ms"] > 0 and r["bimamba2_ms"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "non-attention tensors kept bit-identical: " in out
    kept, total = out.split("bit-identical: ")[1].split()[0].split("/")
    assert kept == total
