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
  path that applies the same rules with three regexes; anything else goes through NLTK's
  tokenizer itself. The test suite checks the two agree on thousands of strings.
- **ROUGE tokens** follow rouge-score: lowercase, every run of non `[a-z0-9]` characters
  becomes a space, tokens longer than 3 characters are Porter-stemmed (NLTK's
  `PorterStemmer`, which needs no data; stems are cached).
- **LCS** uses the bit-parallel algorithm (one big-integer update per token) instead of a
  dynamic-programming table.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from functools import lru_cache

# -- BLEU tokenisation ---------------------------------------------------------------
# Text made only of these characters, without the sequences below, triggers no NLTK
# tokenizer rule except the three applied in `_fast_tokens` (final period, commas).
_PLAIN = re.compile(r"[a-z0-9 \t\n,.\-]*\Z")
_NEEDS_FULL_RULES = re.compile(r"--|\.\.|cannot|gimme|gonna|gotta|lemme|wanna")
_FINAL_PERIOD = re.compile(r"([^\.])(\.)\s*$")
_COMMA = re.compile(r"([:,])([^\d])")
_COMMA_AT_END = re.compile(r"([:,])$")


def _fast_tokens(text: str) -> list[str]:
    if "." in text:
        text = _FINAL_PERIOD.sub(r"\1 \2 ", text)
    if "," in text:
        text = _COMMA.sub(r" \1 \2", text)
        text = _COMMA_AT_END.sub(r" \1 ", text)
    return text.split()


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
    if _PLAIN.match(text) and not _NEEDS_FULL_RULES.search(text):
        return _fast_tokens(text)
    return _full_tokens(text)


# -- ROUGE tokenisation --------------------------------------------------------------
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID = re.compile(r"[a-z0-9]+\Z")
_stemmer = None
_ROUGE_TOKEN: dict[str, str] = {}  # word -> its rouge token ("" if rouge-score drops it)
_ROUGE_TOKEN_LIMIT = 200_000


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
        if len(_ROUGE_TOKEN) < _ROUGE_TOKEN_LIMIT:  # a vocabulary, so it stays small in practice
            _ROUGE_TOKEN[word] = token
    return token


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokens with stemming: lowercase, alphanumeric runs, stem if longer than 3."""
    tokens = [_rouge_token(w) for w in _NON_ALNUM.sub(" ", text.lower()).split()]
    return [t for t in tokens if t]


# -- metrics -------------------------------------------------------------------------
class _Reference:
    """Per ground-truth caption work, done once: it repeats for every rollout of a prompt."""

    __slots__ = ("bleu_len", "counts", "keys", "rouge")

    def __init__(self, text: str) -> None:
        t = tuple(bleu_tokens(text))
        self.bleu_len = len(t)
        self.counts = tuple(Counter(_ngrams(t, n)) for n in (1, 2, 3, 4))
        self.keys = tuple(frozenset(c) for c in self.counts)
        self.rouge = tuple(rouge_tokens(text))


def _ngrams(t: tuple[str, ...], n: int) -> list:
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


def _clipped(grams: list, keys: frozenset, counts: Counter) -> int:
    """Sum over distinct hypothesis n-grams of min(count in hypothesis, count in reference)."""
    distinct = set(grams)
    if len(distinct) == len(grams):  # no repeated n-gram: clipping is a set intersection
        return len(distinct & keys)
    return sum(min(c, counts[g]) for g, c in Counter(grams).items() if g in keys)


def bleu4(ref: _Reference, hyp: list[str]) -> float:
    """NLTK `sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1)`."""
    hyp_len = len(hyp)
    if hyp_len == 0:
        return 0.0
    t = tuple(hyp)
    log_sum = 0.0
    matches = 1
    for n in (1, 2, 3, 4):
        total = hyp_len - n + 1
        if total <= 0:
            matches, total = 0, 1
        elif matches:  # an n-gram match needs an (n-1)-gram match: once 0, always 0
            matches = _clipped(_ngrams(t, n), ref.keys[n - 1], ref.counts[n - 1])
        if n == 1 and matches == 0:
            return 0.0  # NLTK: no unigram match at all scores 0
        log_sum += 0.25 * math.log((matches if matches else 0.1) / total)
    ref_len = ref.bleu_len
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return bp * math.exp(log_sum)


def lcs_length(a: tuple[str, ...] | list[str], b: tuple[str, ...] | list[str]) -> int:
    """Length of the longest common subsequence of two token lists (bit-parallel)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l_f1(target: tuple[str, ...] | list[str], prediction: list[str]) -> float:
    """rouge-score's ROUGE-L F1 (`RougeScorer(['rougeL'], use_stemmer=True)`) on token lists."""
    if not target or not prediction:
        return 0.0
    lcs = lcs_length(target, prediction)
    if lcs == 0:
        return 0.0
    precision = lcs / len(prediction)
    recall = lcs / len(target)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=16384)
def caption_score(prediction: str, reference: str) -> float:
    """½ BLEU-4 (method1) + ½ ROUGE-L F1 of a predicted caption against the reference.

    Memoised: late in training many rollouts of a prompt repeat the same caption.
    """
    ref = _reference(reference)
    bleu = bleu4(ref, bleu_tokens(prediction))
    rouge = rouge_l_f1(ref.rouge, rouge_tokens(prediction))
    return 0.5 * bleu + 0.5 * rouge
