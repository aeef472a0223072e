"""BLEU-4 and ROUGE-L for the caption reward, exact and fast, with no NLTK data files.

The original reward computes `sentence_bleu` (NLTK, smoothing method1) over
`nltk.word_tokenize(text.lower())` tokens and `rouge_score`'s ROUGE-L F1 with Porter
stemming. Both are pure Python and cost ~0.5 ms per caption, and `word_tokenize` needs the
`punkt_tab` data package, whose absence crashed training. Here:

- **BLEU tokens** are NLTK's Treebank-style `NLTKWordTokenizer` on the lowercased text,
  i.e. `word_tokenize(text.lower(), preserve_line=True)`: the same word rules without the
  punkt sentence splitter, so no data download. The only difference from `word_tokenize`
  with punkt installed: a period that ends a sentence *inside* a multi-sentence caption
  stays attached to its word ("cat." instead of "cat", "."); the final period is split
  in both. Plain captions (letters, digits, spaces, commas, periods, hyphens) take a fast
  path that applies the same rules with string operations (and two regexes for commas);
  anything else goes through NLTK's tokenizer itself. The test suite checks the two agree
  on thousands of strings.
- **ROUGE tokens** follow rouge-score: lowercase, every run of non `[a-z0-9]` characters
  becomes a space, tokens longer than 3 characters are Porter-stemmed (NLTK's
  `PorterStemmer`, which needs no data; stems are cached). For a plain caption they are
  read off its BLEU tokens (the same alphanumeric runs), one cached lookup per token.
- **BLEU clipping** is a set intersection with the reference's n-grams; only n-grams the
  reference repeats need counting.
- **LCS** uses the bit-parallel algorithm (one big-integer update per token) instead of a
  dynamic-programming table; the reference's bit masks are built once.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from functools import lru_cache

# -- BLEU tokenisation ---------------------------------------------------------------
# Text made only of these characters, without the sequences below, triggers no NLTK
# tokenizer rule except the two applied in `_fast_tokens` (final period, commas).
_PLAIN = re.compile(r"[a-z0-9 \t\n,.\-]*\Z")
_NEEDS_FULL_RULES = re.compile(r"--|\.\.|cannot|gimme|gonna|gotta|lemme|wanna")
_COMMA = re.compile(r"([:,])([^\d])")
_COMMA_AT_END = re.compile(r"([:,])$")


def _is_plain(text: str) -> bool:
    """True when `text` (lowercased) needs only the fast path's rules."""
    if not _PLAIN.match(text):
        return False
    # Every sequence in _NEEDS_FULL_RULES holds one of these five: a cheap test first.
    if "--" in text or ".." in text or "nn" in text or "mm" in text or "tt" in text:
        return _NEEDS_FULL_RULES.search(text) is None
    return True


def _fast_tokens(text: str) -> list[str]:
    """NLTK's tokens of plain lowercased text: a final period split off, then commas."""
    if "," in text:
        # NLTK's `([^\.])(\.)([\]\)}>"\']*)\s*$` -> `\1 \2\3 ` on plain text: the only
        # period followed by nothing but whitespace is the last character once stripped.
        stripped = text.rstrip()
        if len(stripped) > 1 and stripped[-1] == "." and stripped[-2] != ".":
            text = stripped[:-1] + " . "
        text = _COMMA.sub(r" \1 \2", text)
        text = _COMMA_AT_END.sub(r" \1 ", text)
        return text.split()
    tokens = text.split()
    if tokens:  # the same final-period rule, on the last whitespace-separated word
        last = tokens[-1]
        if len(last) > 1 and last[-1] == "." and last[-2] != ".":
            tokens[-1] = last[:-1]
            tokens.append(".")
    return tokens


_nltk_tokenizer = None


def _full_tokens(text: str) -> list[str]:
    global _nltk_tokenizer
    if _nltk_tokenizer is None:
        from nltk.tokenize.destructive import NLTKWordTokenizer

        _nltk_tokenizer = NLTKWordTokenizer()
    return _nltk_tokenizer.tokenize(text)


def bleu_tokens(text: str) -> list[str]:
    """Lowercased NLTK word tokens of `text` (`word_tokenize(text.lower(), preserve_line=True)`)."""
    text = text.lower()
    return _fast_tokens(text) if _is_plain(text) else _full_tokens(text)


# -- ROUGE tokenisation --------------------------------------------------------------
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID = re.compile(r"[a-z0-9]+\Z")
_stemmer = None
_ROUGE_TOKEN: dict[str, str] = {}  # word -> its rouge token ("" if rouge-score drops it)
_ROUGE_OF_BLEU: dict[str, str] = {}  # BLEU token -> its rouge tokens joined by spaces
_CACHE_LIMIT = 200_000  # entries per cache: a vocabulary, so it stays small in practice


def _rouge_token(word: str) -> str:
    global _stemmer
    token = _ROUGE_TOKEN.get(word)
    if token is None:
        if len(word) > 3:
            if _stemmer is None:
                from nltk.stem.porter import PorterStemmer

                _stemmer = PorterStemmer()
            token = _stemmer.stem(word)
        else:
            token = word
        token = token if _VALID.match(token) else ""
        if len(_ROUGE_TOKEN) < _CACHE_LIMIT:
            _ROUGE_TOKEN[word] = token
    return token


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokens with stemming: lowercase, alphanumeric runs, stem if longer than 3."""
    tokens = [_rouge_token(w) for w in _NON_ALNUM.sub(" ", text.lower()).split()]
    return [t for t in tokens if t]


def _rouge_of_bleu_token(token: str) -> str:
    joined = " ".join(t for t in map(_rouge_token, _NON_ALNUM.sub(" ", token).split()) if t)
    if len(_ROUGE_OF_BLEU) < _CACHE_LIMIT:
        _ROUGE_OF_BLEU[token] = joined
    return joined


_rouge_of_known = _ROUGE_OF_BLEU.__getitem__


def _rouge_from_bleu(tokens: list[str]) -> list[str]:
    """`rouge_tokens` of a plain text from its fast-path BLEU tokens.

    The fast path only adds spaces next to ',' and '.', which rouge-score treats as
    separators anyway, so the alphanumeric runs of the tokens are those of the text.
    """
    try:
        joined = " ".join(map(_rouge_of_known, tokens))
    except KeyError:
        joined = " ".join(map(_rouge_of_bleu_token, tokens))
    return joined.split()


# -- metrics -------------------------------------------------------------------------
class _Reference:
    """Per ground-truth caption work, done once: it repeats for every rollout of a prompt."""

    __slots__ = ("bleu_len", "keys", "repeated", "rouge", "rouge_masks")

    def __init__(self, text: str) -> None:
        t = tuple(bleu_tokens(text))
        self.bleu_len = len(t)
        counts = tuple(Counter(_ngrams(t, n)) for n in (1, 2, 3, 4))
        self.keys = tuple(frozenset(c) for c in counts)
        # n-grams the reference holds more than once: the only ones whose clipped count
        # can exceed 1, so the only ones worth counting in a hypothesis.
        self.repeated = tuple({g: c for g, c in counts_n.items() if c > 1} for counts_n in counts)
        self.rouge = tuple(rouge_tokens(text))
        self.rouge_masks = _lcs_masks(self.rouge)


def _ngrams(t: tuple[str, ...] | list[str], n: int) -> list:
    if n == 1:
        return list(t)
    if n == 2:
        return list(itertools.pairwise(t))
    if n == 3:
        return list(zip(t, t[1:], t[2:], strict=False))
    return list(zip(t, t[1:], t[2:], t[3:], strict=False))


@lru_cache(maxsize=4096)
def _reference(text: str) -> _Reference:
    return _Reference(text)


def _clipped(grams: list, distinct: set, keys: frozenset, repeated: dict) -> int:
    """Sum over distinct hypothesis n-grams of min(count in hypothesis, count in reference).

    Every shared n-gram counts once; only one the reference repeats can count more, up to
    min(count in hypothesis, count in reference), and only if the hypothesis repeats too.
    """
    matches = len(distinct & keys)
    if repeated and len(distinct) != len(grams):
        for g, ref_count in repeated.items():
            if g in distinct:
                matches += min(grams.count(g), ref_count) - 1
    return matches


def _shared(hyp: list[str], n: int, keys: frozenset, repeated: dict) -> int:
    """Clipped n-gram matches (n >= 2), with the hypothesis n-grams built once, as a set."""
    if n == 2:
        distinct = set(itertools.pairwise(hyp))
    elif n == 3:
        distinct = set(zip(hyp, hyp[1:], hyp[2:], strict=False))
    else:
        distinct = set(zip(hyp, hyp[1:], hyp[2:], hyp[3:], strict=False))
    if repeated and len(distinct) != len(hyp) - n + 1:  # rare: both sides repeat an n-gram
        return _clipped(_ngrams(hyp, n), distinct, keys, repeated)
    return len(distinct & keys)


def bleu4(ref: _Reference, hyp: list[str]) -> float:
    """NLTK `sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1)`."""
    hyp_len = len(hyp)
    if hyp_len == 0:
        return 0.0
    matches = _clipped(hyp, set(hyp), ref.keys[0], ref.repeated[0])
    if matches == 0:
        return 0.0  # NLTK: no unigram match at all scores 0
    log_sum = 0.25 * math.log(matches / hyp_len)
    for n in (2, 3, 4):
        total = hyp_len - n + 1
        if total <= 0:
            matches, total = 0, 1
        elif matches:  # an n-gram match needs an (n-1)-gram match: once 0, always 0
            matches = _shared(hyp, n, ref.keys[n - 1], ref.repeated[n - 1])
        log_sum += 0.25 * math.log((matches if matches else 0.1) / total)
    ref_len = ref.bleu_len
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return bp * math.exp(log_sum)


def _lcs_masks(a: tuple[str, ...] | list[str]) -> dict[str, int]:
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    return masks


def _lcs(masks: dict[str, int], a_len: int, b: tuple[str, ...] | list[str]) -> int:
    full = (1 << a_len) - 1
    v = full
    get = masks.get
    for token in b:
        u = v & get(token, 0)
        v = ((v + u) | (v - u)) & full
    return a_len - v.bit_count()


def lcs_length(a: tuple[str, ...] | list[str], b: tuple[str, ...] | list[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel)."""
    if not a or not b:
        return 0
    return _lcs(_lcs_masks(a), len(a), b)


def _rouge_l(lcs: int, target_len: int, prediction_len: int) -> float:
    if lcs == 0:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    return 2 * precision * recall / (precision + recall)


def rouge_l_f1(target: tuple[str, ...] | list[str], prediction: list[str]) -> float:
    """rouge-score's ROUGE-L F1 (`RougeScorer(['rougeL'], use_stemmer=True)`) on token lists."""
    if not target or not prediction:
        return 0.0
    return _rouge_l(lcs_length(target, prediction), len(target), len(prediction))


@lru_cache(maxsize=16384)
def caption_score(prediction: str, reference: str) -> float:
    """½ BLEU-4 (method1) + ½ ROUGE-L F1 of a predicted caption against the reference.

    Memoised: late in training many rollouts of a prompt repeat the same caption.
    """
    ref = _reference(reference)
    lowered = prediction.lower()
    if _is_plain(lowered):  # tokenise once, read the ROUGE tokens off the BLEU tokens
        hyp = _fast_tokens(lowered)
        rouge_hyp = _rouge_from_bleu(hyp)
    else:
        hyp = _full_tokens(lowered)
        rouge_hyp = rouge_tokens(prediction)
    bleu = bleu4(ref, hyp)
    target = ref.rouge
    if target and rouge_hyp:
        rouge = _rouge_l(_lcs(ref.rouge_masks, len(target), rouge_hyp), len(target), len(rouge_hyp))
    else:
        rouge = 0.0
    return 0.5 * bleu + 0.5 * rouge
