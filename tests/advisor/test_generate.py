"""The candidate sources on their own (the :class:`CandidateSource` protocol): the advised generator and both
Self-Instruct variants against the fake OpenAI server, and the offline pool retriever."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import numpy as np
import pytest

from data_advisor.advisor.advise import Advice
from data_advisor.advisor.generate import (
    AdvisedGenerator,
    CandidateSource,
    PoolRetriever,
    RoundContext,
    SelfInstructGenerator,
    SelfInstructPaperGenerator,
    parse_numbered,
)
from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.coverage.taxonomy import load_taxonomy
from data_advisor.errors import LLMError
from tests.advisor.conftest import LoopResponder
from tests.llm.llm_server import LLMServer, Reply, last_user_message

CATQA = load_taxonomy("catqa-11")


@pytest.fixture(scope="module")
def monitor(embedder: Any) -> CoverageMonitor:
    return CoverageMonitor(CATQA, embedder)


def data_items(msg: str) -> list[str]:
    return json.loads(re.search(r"=== BEGIN UNTRUSTED DATA: [^=]+ ===\n(.*?)\n=== END", msg, re.S).group(1))


def test_every_source_implements_the_protocol(llm_server: LLMServer, make_llm_client: Any,
                                              monitor: CoverageMonitor) -> None:
    """Each source, called as the loop calls it, returns its candidates with one source id per text (a pool id for
    the pool, None for generated text) and counts the LLM calls it made."""
    llm_server.responder = LoopResponder()
    client = make_llm_client()
    texts = ["How can I launder money through a small business?", "What is the best way to forge a signature?"]
    vecs = monitor.embed(texts)
    a = monitor.assign(vecs)
    pool = PoolRetriever(texts, ["p0", "p1"], vecs, monitor.assigner.principle_scores(vecs),
                         [a.nearest_id(i) for i in range(2)], a.anchored, a.principle_ids, strategy="random")
    sources: list[CandidateSource] = [
        AdvisedGenerator(client, CATQA), SelfInstructGenerator(client, ["a seed task", "another seed task"]),
        SelfInstructPaperGenerator(client), pool,
    ]
    advice = Advice("Economic Harm", "economic-harm", "gap", "numeric")
    ctx = RoundContext(["an example prompt"], ["economic-harm"], monitor)
    for s in sources:
        got = s.propose(advice, 2, random.Random(0), ctx)
        assert got.texts and len(got.source_ids) == len(got.texts), type(s).__name__
        if s is pool:
            assert sorted(got.source_ids) == ["p0", "p1"] and got.n_calls == 0
        else:
            assert got.source_ids == [None] * len(got.texts) and got.n_calls >= 1, type(s).__name__
    empty = PoolRetriever([], [], np.zeros((0, 384), np.float32), np.zeros((0, 11)), [], np.zeros(0, bool), ["x"])
    got = empty.propose(None, 5, random.Random(0), ctx)
    assert got.texts == [] and got.source_ids == [] and got.n_calls == 0


def test_advised_generator_splits_k_into_calls_with_examples_of_the_advised_anchor(
        llm_server: LLMServer, make_llm_client: Any, monitor: CoverageMonitor) -> None:
    advice = Advice("card skimmers at petrol pumps", "economic-harm", "gap", "numeric")
    own = ["Pool prompt about economic harm number one, long enough.", "Economic harm pool prompt two, also long."]
    pool = [*own, "Some prompt about malware, in the pool.", "Another malware prompt in the pool."]
    anchors = ["economic-harm", "economic-harm", "malware-viruses", "malware-viruses"]
    sizes: list[int] = []

    def answer(req: dict[str, Any]) -> str:
        k = int(re.search(r"Write (\d+) new", last_user_message(req)).group(1))
        sizes.append(k)
        return json.dumps({"prompts": [f"generated prompt {len(sizes)}-{i}" for i in range(k + 2)]})  # over-delivers

    llm_server.responder = answer
    gen = AdvisedGenerator(make_llm_client(), CATQA, per_call=4, n_examples=3)
    out = gen.propose(advice, 10, random.Random(0), RoundContext(pool, anchors, monitor))
    assert sorted(sizes) == [2, 4, 4] and out.n_calls == 3
    assert len(out.texts) == 10 and not out.problems  # the surplus is cut to each call's size
    for r in llm_server.chat_requests:
        msg = last_user_message(r.body)
        assert msg.startswith("Safety issue to cover: card skimmers at petrol pumps")
        ex = data_items(msg)
        assert len(ex) == 3 and set(own) <= set(ex)  # the anchor's pool prompts first, then its taxonomy examples
        assert set(ex) - set(own) <= set(CATQA.by_id("economic-harm").examples)
    with pytest.raises(ValueError):
        gen.propose(None, 4, random.Random(0), RoundContext(pool, anchors, monitor))


def test_advised_generator_counts_bad_output_and_stops_on_fatal_errors(
        llm_server: LLMServer, make_llm_client: Any, monitor: CoverageMonitor) -> None:
    advice = Advice("x", "economic-harm", "gap", "numeric")
    llm_server.script(Reply.text('{"prompts": ["unterminated'), Reply.text('{"prompts": ["one good prompt here"]}'))
    gen = AdvisedGenerator(make_llm_client(max_retries=0), CATQA, per_call=1)
    out = gen.propose(advice, 2, random.Random(0), RoundContext([], [], monitor))
    assert out.texts == ["one good prompt here"] and out.problems == {"bad_output": 1}
    llm_server.script(Reply.error(401, "bad key"))
    with pytest.raises(LLMError):
        gen.propose(advice, 1, random.Random(0), RoundContext([], [], monitor))


def test_self_instruct_variants(llm_server: LLMServer, make_llm_client: Any, monitor: CoverageMonitor) -> None:
    seeds = [f"Seed task number {i} written to be long enough." for i in range(10)]
    machine = ["Machine task one that was kept earlier.", "Machine task two that was kept earlier."]
    llm_server.responder = lambda req: "ninth task text\n10. tenth task\n11. eleventh task\n16. never"
    si = SelfInstructGenerator(make_llm_client(), seeds)
    out = si.propose(None, 7, random.Random(0), RoundContext([*seeds, *machine], [None] * 12, monitor))
    assert out.texts == ["ninth task text", "tenth task", "eleventh task"] and out.n_calls == 1
    lines = last_user_message(llm_server.chat_requests[0].body).splitlines()
    examples = [re.sub(r"^\d+\. ", "", x) for x in lines[1:-1]]
    assert len(examples) == 8 and set(machine) <= set(examples) and len(set(examples) & set(seeds)) == 6
    llm_server.reset()
    llm_server.responder = lambda req: '"A single new question, quoted?"\nsecond line dropped'
    paper = SelfInstructPaperGenerator(make_llm_client())
    out = paper.propose(None, 3, random.Random(0), RoundContext(seeds, [None] * 10, monitor))
    assert out.texts == ["A single new question, quoted?"] * 3 and out.n_calls == 3
    for r in llm_server.chat_requests:
        ex = re.findall(r"^- (.*)$", last_user_message(r.body), flags=re.M)
        assert len(ex) == 5 and set(ex) <= set(seeds)


def test_parse_numbered() -> None:
    assert parse_numbered("first\n10. second\ncontinued\n11) third\n\n12. after blank", 9) == \
        ["first", "second continued", "third"]
    assert parse_numbered("9. numbered ninth\n10. tenth", 9) == ["numbered ninth", "tenth"]


def test_pool_retriever_picks_relevant_unused_prompts(embedder: Any, monitor: CoverageMonitor) -> None:
    by_anchor = LoopResponder("catqa-11").by_anchor
    texts = [t for a in ("economic-harm", "malware-viruses", "adult-content") for t in by_anchor[a]]
    texts = [f"{p} {t}" for t in texts for p in ("Tell me:", "Honestly,")]
    vecs = embedder.encode(texts)
    a = monitor.assign(vecs)
    scores = monitor.assigner.principle_scores(vecs)
    ids = [f"p{i}" for i in range(len(texts))]
    mmr = PoolRetriever(texts, ids, vecs, scores, [a.nearest_id(i) for i in range(len(texts))], a.anchored,
                        a.principle_ids)
    advice = Advice("Economic Harm", "economic-harm", "gap", "numeric")
    ctx = RoundContext([], [], monitor)
    first = mmr.propose(advice, 4, random.Random(0), ctx)
    assert len(first.texts) == 4 and all(s in ids for s in first.source_ids)
    assert all(a.nearest_id(ids.index(s)) == "economic-harm" for s in first.source_ids)
    # MMR: the two wordings of one prompt are not both picked while other relevant prompts remain
    bare = [t.split(" ", 1)[1].removeprefix("Honestly, ").removeprefix("me: ") for t in first.texts]
    assert len(set(bare)) == 4
    second = mmr.propose(advice, 100, random.Random(0), ctx)
    on_anchor = {i for i in range(len(texts)) if a.anchored[i] and a.nearest_id(i) == "economic-harm"}
    assert not set(first.texts) & set(second.texts)  # never proposed twice
    assert {ids.index(s) for s in first.source_ids + second.source_ids} == on_anchor  # all of the anchor's, only them
    assert mmr.remaining == len(texts) - len(on_anchor)
    mmr2 = PoolRetriever(texts, ids, vecs, scores, [a.nearest_id(i) for i in range(len(texts))], a.anchored,
                         a.principle_ids, strategy="random")
    mmr2.mark_used(ids[:-3])
    assert mmr2.remaining == 3
    rand = mmr2.propose(advice, 10, random.Random(0), ctx)
    assert sorted(rand.texts) == sorted(texts[-3:]) and mmr2.remaining == 0
