"""An LLM as judge, for when rules are too crude: a model the user picks grades each answer.

The judge model sees the question, the reference where the item has one, the answer and the check's
instructions, and must reply with one of the rule judge's verdicts; a reply naming none of them is
``unclear``. Its prompt and raw reply are kept with every verdict, next to the rule judge's verdict
on the same answer, so the two can be compared answer by answer (and the agreement rate is reported).
A small model is a poor judge: the bundled ones show how poor, which is worth seeing.
"""

from __future__ import annotations

from ..config import GenerationConfig
from .judges import Judge, LabelJudge, Verdict, as_list

DEFAULT_INSTRUCTIONS = {
    "reference": "Reply 'correct' if the answer gives the reference answer, otherwise 'incorrect'.",
    "number": "Reply 'correct' if the answer's final number equals the reference, otherwise 'incorrect'.",
    "label": "Which label does the answer give?",
    "gender": "What gender does the text give its main character? 'female', 'male', 'mixed' (both "
              "equally), 'neutral' (only they/them) or 'none' (no gender at all).",
    "staleness": "Reply 'flagged' if the answer warns that its information may be out of date; "
                 "'current' if it gives the reference answer; 'stale' if it gives one of the outdated "
                 "answers; otherwise 'other'.",
}
JUDGE_SETTINGS = GenerationConfig(temperature=0, max_new_tokens=8)


class LLMJudge(Judge):
    type = "llm"

    def __init__(self, model, rules: Judge, instructions: str | None = None):
        self.model = model
        self.rules = rules
        self.instructions = (instructions or getattr(rules, "llm_instructions", None)
                             or DEFAULT_INSTRUCTIONS.get(rules.type, "Choose the verdict that fits best."))
        self.verdicts = tuple(rules.verdicts) + ("unclear",)
        self.needs = rules.needs
        self.name = f"{model.backend}/{model.info.name}"
        self._parse = LabelJudge(list(rules.verdicts))
        self.chat = model.chats

    def prompt(self, answer: str, item: dict) -> str:
        lines = ["You are grading an answer to a question.", f"Question: {item.get('prompt', '')}"]
        if item.get("reference") not in (None, "", []):
            lines.append("Reference answer: " + " / ".join(str(r) for r in as_list(item["reference"])))
        if item.get("stale"):
            lines.append("Outdated answers: " + " / ".join(str(r) for r in as_list(item["stale"])))
        if item.get("as_of"):
            lines.append(f"The reference is correct as of {item['as_of']}.")
        lines += [f"Answer to grade: {answer.strip()}", self.instructions.strip(),
                  f"Reply with one word: {', '.join(self.rules.verdicts)}."]
        return "\n".join(lines)

    def __call__(self, answer: str, item: dict) -> Verdict:
        text = self.prompt(answer, item)
        if self.chat:
            reply = self.model.generate([("user", text)], JUDGE_SETTINGS).text
        else:  # a base model completes a 'Verdict:' line
            reply = self.model.generate(text + "\nVerdict:", JUDGE_SETTINGS.replace(stop=("\n",))).text
        parsed = self._parse(reply, item)
        label = parsed.label if parsed.label != "none" else "unclear"
        rule = self.rules(answer, item)
        return Verdict(label, f"{self.name} replied {reply.strip()!r}",
                       {"judge_prompt": text, "judge_reply": reply, "rule_verdict": rule.label,
                        "rule_reason": rule.reason})

    def describe(self) -> str:
        return f"LLM judge {self.name} ({self.instructions.strip()}); rules kept for comparison: " \
               f"{self.rules.describe()}"


def agreement(records) -> tuple[int, int]:
    """How many LLM verdicts equal the rule verdict on the same answer, of how many judged."""
    judged = [r for r in records if "rule_verdict" in r.detail]
    return sum(r.verdict == r.detail["rule_verdict"] for r in judged), len(judged)
