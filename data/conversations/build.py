"""Writes tune.jsonl and validation.jsonl: the multi-turn routing evaluation set.

Run once (`python data/conversations/build.py`); the output is committed, deterministic (seeded).
Every pool of texts is split in two before any conversation is built: the validation half's
openers, follow-ups, escalations and tools are never seen while tuning.

A conversation: {"id", "kind", "system"?, "tools"?, "steps": [{"add": [messages], "model",
"reasoning", "escalation"}]}. Each step's `add` is what the client appends before that request
(a user turn, or the assistant's tool call and the tool's result); the bench puts a short
assistant answer between a step and the next user turn. `model`/`reasoning`: the route the turn
should get; `escalation`: the turn is a labelled escalation (the route may, and should, change).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FAST = {"model": "fast", "reasoning": False}
REASONER = {"model": "reasoner", "reasoning": True}

SIMPLE_OPENERS = [
    "What's the capital of Australia?",
    "Write a haiku about autumn leaves.",
    "Give me a synonym for happy.",
    "Translate 'good morning' into Spanish.",
    "What time zone is Tokyo in?",
    "Suggest three names for a grey kitten.",
    "Who wrote Pride and Prejudice?",
    "Recommend a good sci-fi novel for a long flight.",
    "How do I say thank you in Japanese?",
    "What is the tallest mountain in Africa?",
    "Write a two-line birthday message for my sister.",
    "What's a good name for a bakery?",
    "Tell me a fun fact about octopuses.",
    "Which planet is closest to the sun?",
    "Give me a quick idea for a weeknight dinner.",
    "What's the plural of cactus?",
    "Write a friendly out-of-office email reply.",
    "What does the word 'ephemeral' mean?",
    "Suggest a playlist title for a road trip.",
    "How many continents are there?",
    "What's the boiling point of water in Fahrenheit?",
    "Give me a packing list for a beach weekend.",
    "Who painted the Mona Lisa?",
    "Write a short slogan for a coffee shop.",
    "What is the currency of Switzerland?",
    "Name a few houseplants that need little light.",
    "What's the difference between a lake and a pond?",
    "Write a limerick about a sleepy cat.",
    "What language is spoken in Brazil?",
    "Suggest a caption for a photo of a sunset.",
]
HARD_OPENERS = [
    "Prove that the square root of 2 is irrational, step by step.",
    "Derive the closed form of the sum of a geometric series and show your work.",
    "Two trains leave 300 km apart at 60 and 90 km/h towards each other; when and where do "
    "they meet? Show your work step by step.",
    "Prove by induction that 1 + 2 + ... + n = n(n+1)/2.",
    "Find all real solutions of x^4 - 5x^2 + 4 = 0 and prove there are no others.",
    "Derive the time complexity of merge sort step by step using the recurrence.",
    "A ball is thrown up at 20 m/s; derive its maximum height and the time to reach it.",
    "Prove that there are infinitely many prime numbers.",
    "Solve the system 3x + 2y = 12 and x - y = 1, showing every step.",
    "Derive the derivative of x^x from first principles, step by step.",
    "Prove that the angles of a triangle sum to 180 degrees.",
    "Compute the probability of at least one six in four rolls of a die; derive it.",
    "Show step by step why the halting problem is undecidable.",
    "Derive the formula for compound interest and apply it to 1000 at 5% for 10 years.",
    "Prove that every tree with n nodes has exactly n - 1 edges.",
    "Work out step by step how many ways 8 rooks can be placed on a chessboard without "
    "attacking each other.",
    "Prove that the sum of two odd numbers is even, and derive a general rule.",
    "Derive the kinetic energy formula from Newton's second law, step by step.",
    "Show your work: what is the expected number of coin flips to get two heads in a row?",
    "Prove that log base 2 of 3 is irrational.",
]
FOLLOWUPS = [
    "and what about the second one?",
    "Can you make it shorter?",
    "Thanks! Can you give me another one?",
    "Why is that?",
    "ok, and in simpler words?",
    "Give me two more examples.",
    "What do you mean by that?",
    "Can you put that in a bullet list?",
    "nice, and a slightly different version?",
    "Could you say it more formally?",
    "And the opposite case?",
    "hmm ok, anything else I should know?",
    "Can you summarise that in one sentence?",
    "what about the other one you mentioned?",
    "Great, can you add an example?",
    "and if I wanted it for a child?",
]
HARD_FOLLOWUPS = [
    "and what about the second case?",
    "Can you check the last step again?",
    "Why does that step hold?",
    "ok, what if n is odd?",
    "And the general case?",
    "Can you write the final answer on its own line?",
    "What changes if the numbers are doubled?",
    "Is there a shorter argument?",
    "and for the converse?",
    "Explain the step in the middle a bit more.",
]
ESCALATIONS = [
    "Now prove step by step that this holds for every positive integer n.",
    "Actually, derive the exact formula for that and show your work.",
    "Let's go deeper: prove rigorously why that is true, step by step.",
    "Now work out the probability of that happening twice in a row and show your work.",
    "Okay, can you derive the underlying equation step by step and check every step?",
    "Now prove that the result is optimal, with a step by step argument.",
    "Derive how long it would take at 3% growth per year and show your work.",
    "Prove it formally by induction, step by step.",
    "Solve for x exactly and show each step: 2^x = 3x + 1.",
    "Now compute the expected value step by step and prove the bound.",
]
REASKS = [
    "That's not what I asked. {q}",
    "No, again please: {q}",
    "You didn't answer. {q}",
    "Let me ask again: {q}",
]
TOOLS = [
    (
        "get_weather",
        "Current weather for a city",
        "city",
        "What's the weather in {x} right now?",
        ["Paris", "Oslo", "Lima", "Cairo", "Seoul", "Denver"],
        '{"temp_c": 14, "rain": true}',
    ),
    (
        "search_flights",
        "Find flights between two airports",
        "route",
        "Find me a flight for {x} next Friday.",
        ["LHR-JFK", "CDG-FCO", "SFO-NRT", "MAD-BCN", "BER-VIE", "YYZ-MEX"],
        '{"flights": [{"id": "BA117", "price": 420}]}',
    ),
    (
        "lookup_order",
        "Look up an order's status",
        "order_id",
        "Where is my order {x}?",
        ["A1001", "B2044", "C3090", "D4120", "E5555", "F6060"],
        '{"status": "shipped"}',
    ),
    (
        "run_sql",
        "Run a read-only SQL query",
        "query",
        "How many users signed up {x}? Query the database.",
        ["yesterday", "last week", "in March", "this year", "today", "last month"],
        '{"rows": [[1342]]}',
    ),
    (
        "read_file",
        "Read a file of the repository",
        "path",
        "Open {x} and tell me what it does.",
        ["src/app.py", "Makefile", "setup.cfg", "lib/util.js", "main.go", "README.md"],
        '{"content": "def main(): ..."}',
    ),
    (
        "calculator",
        "Evaluate an arithmetic expression",
        "expression",
        "Use the calculator: what is {x}?",
        ["17*23", "2**20", "355/113", "99*99", "3.7*41", "1234+5678"],
        '{"result": 391}',
    ),
]
TOOL_FOLLOWUPS = [
    "and what about {x}?",
    "Do the same for {x}.",
    "ok, now {x} please.",
    "Check {x} too.",
]


def halves(items: list[Any]) -> tuple[list[Any], list[Any]]:
    cut = (len(items) * 3) // 5
    return items[:cut], items[cut:]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def step(add: list[dict[str, Any]], label: dict[str, Any], escalation: bool = False) -> dict:
    return {"add": add, **label, "escalation": escalation}


def tool_call(name: str, arg: str, value: str, ident: str, result: str) -> list[dict[str, Any]]:
    call = {
        "id": ident,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps({arg: value})},
    }
    return [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": ident, "content": result},
    ]


def tool_spec(name: str, description: str, arg: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string"}},
                "required": [arg],
            },
        },
    }


def build(split: str, pools: dict[str, list[Any]], rng: random.Random, counts: dict[str, int]):
    out: list[dict[str, Any]] = []

    def add(kind: str, steps: list[dict], **extra: Any) -> None:
        out.append({"id": f"{split}-{kind}-{len(out):03d}", "kind": kind, **extra, "steps": steps})

    for _ in range(counts["simple"]):
        n = rng.randint(3, 8)
        steps = [step([user(rng.choice(pools["simple"]))], FAST)]
        steps += [
            step([user(f)], FAST)
            for f in rng.sample(pools["followups"], min(n - 1, len(pools["followups"])))
        ]
        add("simple", steps)
    for _ in range(counts["hard"]):
        n = rng.randint(3, 6)
        steps = [step([user(rng.choice(pools["hard"]))], REASONER)]
        steps += [
            step([user(f)], REASONER)
            for f in rng.sample(pools["hard_followups"], min(n - 1, len(pools["hard_followups"])))
        ]
        add("hard", steps)
    for _ in range(counts["escalation"]):
        before, after = rng.randint(1, 3), rng.randint(1, 3)
        steps = [step([user(rng.choice(pools["simple"]))], FAST)]
        steps += [step([user(f)], FAST) for f in rng.sample(pools["followups"], before)]
        steps.append(step([user(rng.choice(pools["escalations"]))], REASONER, escalation=True))
        steps += [step([user(f)], REASONER) for f in rng.sample(pools["hard_followups"], after)]
        add("escalation", steps[:8])
    for _ in range(counts["reask"]):
        question = rng.choice(pools["simple"])
        followups = rng.sample(pools["followups"], rng.randint(1, 3))
        steps = [step([user(question)], FAST)]
        steps += [step([user(f)], FAST) for f in followups]
        steps.append(step([user(rng.choice(pools["reasks"]).format(q=question))], FAST))
        steps.append(step([user(rng.choice(pools["followups"]))], FAST))
        add("reask", steps)
    for c in range(counts["tool_loop"]):
        name, description, arg, ask, values, result = rng.choice(pools["tools"])
        label = REASONER if name == "calculator" and rng.random() < 0.5 else FAST
        picks = rng.sample(values, 3)
        if rng.random() < 0.4:  # a long result (a whole file, a big table): long_context fires
            result = json.dumps(
                {"content": " ".join(f"line {i}: value {i * 7}" for i in range(900))}
            )
        text = ask.format(x=picks[0])
        if label is REASONER:
            text = f"{text} Derive it step by step and show your work."
        steps = [step([user(text)], label)]
        steps.append(step(tool_call(name, arg, picks[0], f"call_{c}_0", result), label))
        for k, value in enumerate(picks[1 : rng.randint(2, 3)], 1):
            steps.append(step([user(rng.choice(pools["tool_followups"]).format(x=value))], label))
            steps.append(step(tool_call(name, arg, value, f"call_{c}_{k}", result), label))
        add(
            "tool_loop",
            steps,
            tools=[tool_spec(name, description, arg)],
            system="You are an assistant with tools. Call a tool when you need data.",
        )
    return out


def main() -> None:
    rng = random.Random(18)
    pools = {
        "simple": SIMPLE_OPENERS,
        "hard": HARD_OPENERS,
        "followups": FOLLOWUPS,
        "hard_followups": HARD_FOLLOWUPS,
        "escalations": ESCALATIONS,
        "reasks": REASKS,
        "tools": TOOLS,
        "tool_followups": TOOL_FOLLOWUPS,
    }
    shuffled = {k: rng.sample(v, len(v)) for k, v in pools.items()}
    split = {k: halves(v) for k, v in shuffled.items()}
    counts = {"simple": 30, "hard": 15, "escalation": 20, "reask": 10, "tool_loop": 20}
    for index, name in enumerate(("tune", "validation")):
        own = {k: v[index] for k, v in split.items()}
        scale = 1.0 if name == "tune" else 0.6
        rows = build(name, own, rng, {k: max(2, round(v * scale)) for k, v in counts.items()})
        with (HERE / f"{name}.jsonl").open("w") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        print(name, len(rows))


if __name__ == "__main__":
    main()
