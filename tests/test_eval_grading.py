"""Graders, statistics and behaviour checks of lorebook.evaluate on crafted replies (fast)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from lorebook.evaluate import behaviour
from lorebook.evaluate.judge import Judge, agreement, parse_verdict
from lorebook.evaluate.normalize import match, normalize
from lorebook.evaluate.stats import bootstrap_mean, bootstrap_ratio, share, wilson


@pytest.mark.parametrize("reply, answers", [
    ("The capital of France is Paris.", ["Paris"]),
    ("PARIS!", ["paris"]),
    ("The winner was Brendan Fraser, for The Whale.", ["Brendan Fraser"]),
    ("Michelle Yeoh won it.", ["Michelle Yeoh"]),
    ("It was Zoe Saldana", ["Zoë Saldaña"]),  # accents
    ("Zoë Saldaña starred", ["Zoe Saldana"]),
    ("It was the ninety-fifth ceremony.", ["95th"]),  # numbers as words, ordinals
    ("There are twenty-six letters.", ["26"]),
    ("It ended in 1945.", ["nineteen forty-five"]),
    ("About 1,000 people", ["one thousand"]),
    ("one hundred and five", ["105"]),
    ("The answer is Everything Everywhere All at Once", ["Everything Everywhere All at Once"]),
    ("It's the Pacific.", ["Pacific Ocean", "Pacific"]),  # alias
    ("A Eiffel tower", ["the Eiffel Tower"]),  # articles
    ("Washington, D.C. is the capital", ["Washington, D.C."]),  # punctuation
])
def test_match_accepts_correct_replies(reply, answers):
    assert match(reply, answers)


@pytest.mark.parametrize("reply, answers", [
    ("A Parisian café", ["Paris"]),  # substring of a longer word
    ("Brendan Gleeson was nominated", ["Brendan Fraser"]),  # half of a name
    ("It is not Paris, it is Lyon.", ["Paris"]),  # negated
    ("It ended in 1995.", ["1945"]),
    ("There are 995 of them", ["1995"]),
    ("", ["Paris"]),
    ("I don't know.", ["Paris"]),
    ("twenty", ["26"]),
    ("The Whale", ["Brendan Fraser"]),
])
def test_match_rejects_near_misses(reply, answers):
    assert not match(reply, answers)


def test_normalize_rules():
    assert normalize("The 95th Academy Awards!") == "95 academy awards"
    assert normalize("Nineteen ninety-five") == "1995"
    assert normalize("two thousand and twenty-three") == "2023"
    assert normalize("Ñandú Ångström") == "nandu angstrom"
    assert normalize("3.14 is pi.") == "3.14 is pi"
    assert normalize("El Niño") == "nino"  # Spanish articles too


def test_wilson_matches_closed_form():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)
    metric = share([True, True, False, True])
    assert metric["value"] == 0.75 and metric["n"] == 4 and metric["ci"][0] < 0.75 < metric["ci"][1]


def test_bootstrap_intervals_contain_the_mean_and_are_seeded():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    first, second = bootstrap_mean(values), bootstrap_mean(values)
    assert first == second
    assert first["ci"][0] <= 3.5 <= first["ci"][1] and first["ci"][0] < first["ci"][1]
    ratio = bootstrap_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert ratio["value"] == pytest.approx(2.0) and ratio["ci"] == [pytest.approx(2.0), pytest.approx(2.0)]
    assert bootstrap_mean([])["value"] is None


def test_behaviour_checks():
    loop = "I am here. " * 20
    assert behaviour.is_loop(loop) and behaviour.is_degenerate(loop)
    normal = "Paris is the capital of France. It sits on the Seine and is known for art, food and the Eiffel Tower."
    assert not behaviour.is_loop(normal)
    assert behaviour.is_empty("  ...  ") and behaviour.is_degenerate("")
    assert behaviour.ngram_entropy(normal) > behaviour.ngram_entropy(loop)
    assert behaviour.breaks_character("Como modelo de lenguaje, no puedo ayudar.")
    assert not behaviour.breaks_character("Su pasaporte, por favor.")
    assert behaviour.language_of("Buenos días, ¿me enseña su pasaporte, por favor?") == "es"
    assert behaviour.language_of("Good morning, may I see your passport please?") == "en"


def test_judge_verdicts_and_agreement():
    assert parse_verdict("Yes.") is True and parse_verdict(" no, it does not") is False
    assert parse_verdict("Maybe") is None
    result = agreement([True, False, True, False], [True, False, False, None])
    assert result["n"] == 3 and result["value"] == pytest.approx(2 / 3) and result["no_verdict"] == 1


class _FakeJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that says yes when the reply contains the expected answer."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        expected = prompt.split("Expected answer: ")[1].split("\n")[0]
        reply = prompt.split("Reply to grade: ")[1]
        verdict = "Yes" if expected.lower() in reply.lower() else "No"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": verdict}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_remote_judge_over_openai_compatible_url():
    server = HTTPServer(("127.0.0.1", 0), _FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        judge = Judge(f"http://127.0.0.1:{server.server_port}/v1#fake")
        verdicts = judge.grade([("Capital of France?", "Paris", [], "It is Paris."),
                                ("Capital of France?", "Paris", [], "It is Lyon.")])
        assert verdicts == [True, False]
    finally:
        server.shutdown()


def test_remote_judge_unreachable_is_one_line_error():
    from lorebook.errors import InputError

    with pytest.raises(InputError, match="judge server"):
        Judge("http://127.0.0.1:9/v1").grade([("q", "a", [], "r")])
