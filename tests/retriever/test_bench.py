from __future__ import annotations

from retriever.bench import bench_filters, bench_retrieval, clustered_embeddings


def test_clustered_embeddings_are_normalised() -> None:
    items, queries = clustered_embeddings(500, 8, 10)
    assert items.shape == (500, 8) and queries.shape == (10, 8)
    assert abs(float((items**2).sum(axis=1).mean()) - 1.0) < 1e-4


def test_bench_smoke() -> None:
    lines: list[str] = []
    res = bench_retrieval(
        2000,
        8,
        out=lines.append,
        hnsw_builds=((8, 20),),
        ef_searches=(32,),
        ivf_nlists=(16,),
        nprobes=(4,),
        n_queries=50,
        n_single=20,
    )
    assert [r["kind"] for r in res["rows"]] == ["flat", "hnsw", "ivf"]
    assert res["rows"][0]["recall_at_10"] == 1.0
    assert any(line.startswith("chosen") or line.startswith("no configuration") for line in lines)
    fres = bench_filters(2000, 8, out=lines.append, selectivities=(0.01, 0.5), n_queries=20)
    assert fres["rows"][0]["recall"] == 1.0
