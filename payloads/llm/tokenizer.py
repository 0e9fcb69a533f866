"""Byte-level BPE tokenizer (GPT-2 style) from a GGUF file or a Hugging Face tokenizer.json.

Why our own: ``tokenizers``/``transformers`` are not installed (and not wanted on the boards),
and the vocabulary, merges and chat template are all inside the GGUF we ship.

Pre-tokenization follows llama.cpp's table for ``tokenizer.ggml.pre``.  SmolLM2's is "smollm":
every digit is split off on its own (``\\p{N}``), then the GPT-2 regex
``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``.  The
stdlib ``re`` has no ``\\p{..}`` (and the ``regex`` module is not in the venv), so the letter
and number classes are built once from ``unicodedata`` as explicit code-point ranges, and
``\\s`` is replaced by the Unicode White_Space set (what ``regex`` and Rust's ``\\s`` match;
stdlib ``\\s`` also matches U+001C..U+001F).  The only approximation left is the Unicode
version of the running Python's ``unicodedata`` versus the one the model's tokenizer used.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

# Unicode White_Space property (PropList.txt), i.e. what \s means in `regex` and Rust.
_WS = "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"

# token_type values in GGUF (llama.cpp's llama_token_type)
_TYPE_CONTROL = 3
_TYPE_USER_DEFINED = 4


def _ranges(chars: Iterable[int]) -> str:
    """A regex character-class body for a sorted list of code points."""
    out: list[str] = []
    chars = list(chars)
    i = 0
    while i < len(chars):
        j = i
        while j + 1 < len(chars) and chars[j + 1] == chars[j] + 1:
            j += 1
        a, b = chars[i], chars[j]
        out.append(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}")
        i = j + 1
    return "".join(out)


@lru_cache(maxsize=1)
def _unicode_classes() -> tuple[str, str]:
    """(letters, numbers) = \\p{L}, \\p{N} as class bodies.

    Every L* and N* character is in stdlib ``\\w``, so only the ``\\w`` characters are
    classified.  Only planes 0-3 are scanned (~60 ms instead of ~0.2 s for all 17): planes 4-13
    are unassigned, 14 holds tags and variation selectors, 15-16 private use - no letters or
    numbers in any Unicode version so far.
    """
    everything = "".join(map(chr, range(0x40000)))
    letters, numbers = [], []
    for ch in re.findall(r"\w", everything):
        cat = unicodedata.category(ch)
        if cat[0] == "L":
            letters.append(ord(ch))
        elif cat[0] == "N":
            numbers.append(ord(ch))
    return _ranges(letters), _ranges(numbers)


@lru_cache(maxsize=8)
def pretokenizer_patterns(pre: str) -> tuple[re.Pattern[str], ...]:
    """The regexes applied in sequence for a llama.cpp pre-tokenizer name.

    Each regex splits every piece from the previous one into its matches and the text between
    them (llama.cpp's ``unicode_regex_split``).
    """
    L, N = _unicode_classes()
    L, N = f"[{L}]", f"[{N}]"
    s, S = f"[{_WS}]", f"[^{_WS}]"
    gpt2 = (f"'s|'t|'re|'ve|'m|'ll|'d| ?{L}+| ?{N}+| ?[^{_WS}{L[1:-1]}{N[1:-1]}]+"
            f"|{s}+(?!{S})|{s}+")
    if pre in ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"):
        return re.compile(N), re.compile(gpt2)
    if pre in ("llama3", "llama-bpe", "llama-v3", "dbrx", "smaug-bpe"):
        llama3 = (f"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n{L[1:-1]}{N[1:-1]}]?{L}+|{N}{{1,3}}"
                  f"| ?[^{_WS}{L[1:-1]}{N[1:-1]}]+[\\r\\n]*|{s}*[\\r\\n]+|{s}+(?!{S})|{s}+")
        return (re.compile(llama3),)
    if pre in ("gpt2", "default", "gpt-2", "mpt", "olmo", "jais"):
        return (re.compile(gpt2),)
    raise NotImplementedError(f"pre-tokenizer {pre!r} is not supported (smollm, gpt2, llama3)")


def _split(text: str, patterns: Sequence[re.Pattern[str]]) -> list[str]:
    pieces = [text]
    for pat in patterns:
        nxt: list[str] = []
        for piece in pieces:
            last = 0
            for m in pat.finditer(piece):
                if m.start() > last:
                    nxt.append(piece[last:m.start()])
                if m.end() > m.start():
                    nxt.append(m.group())
                last = m.end()
            if last < len(piece):
                nxt.append(piece[last:])
        pieces = nxt
    return pieces


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


class Tokenizer:
    """Byte-level BPE: ``encode``/``decode`` and the model's chat template.

    Special (control and user-defined) tokens in the text are matched whole and become one id
    each, before any BPE.
    """

    def __init__(self, tokens: Sequence[str], merges: Sequence[str | Sequence[str]],
                 special: Iterable[int], pre: str = "gpt2", chat_template: str | None = None,
                 bos_id: int | None = None, eos_id: int | None = None,
                 add_bos: bool = False) -> None:
        self.tokens = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.tokens)}
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, m in enumerate(merges):
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            self.ranks[(a, b)] = rank
        self.special_ids = set(special)
        self.pre = pre
        self.patterns = pretokenizer_patterns(pre)
        self.chat_template = chat_template
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        self._byte_enc = bytes_to_unicode()
        self._byte_dec = {c: b for b, c in self._byte_enc.items()}
        specials = sorted((self.tokens[i] for i in self.special_ids), key=len, reverse=True)
        self._special_re = (re.compile("|".join(map(re.escape, specials))) if specials
                            else None)
        self._cache: dict[str, list[int]] = {}

    # ---- construction

    @classmethod
    def from_gguf(cls, path: str | Path) -> Tokenizer:
        from payloads.llm.model import open_gguf

        f = open_gguf(path).fields
        model = f.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise NotImplementedError(f"{path}: tokenizer model {model!r}; only byte-level BPE"
                                      " ('gpt2') is supported")
        types = f.get("tokenizer.ggml.token_type") or []
        special = [i for i, t in enumerate(types) if t in (_TYPE_CONTROL, _TYPE_USER_DEFINED)]
        return cls(f["tokenizer.ggml.tokens"], f["tokenizer.ggml.merges"], special,
                   pre=f.get("tokenizer.ggml.pre", "gpt2"),
                   chat_template=f.get("tokenizer.chat_template"),
                   bos_id=f.get("tokenizer.ggml.bos_token_id"),
                   eos_id=f.get("tokenizer.ggml.eos_token_id"),
                   add_bos=bool(f.get("tokenizer.ggml.add_bos_token", False)))

    @classmethod
    def from_hf(cls, directory: str | Path) -> Tokenizer:
        """From tokenizer.json (+ tokenizer_config.json for the chat template and bos/eos)."""
        directory = Path(directory)
        tj = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
        model = tj["model"]
        if model.get("type") != "BPE":
            raise NotImplementedError(f"{directory}: tokenizer model {model.get('type')!r}")
        vocab: dict[str, int] = dict(model["vocab"])
        for added in tj.get("added_tokens", []):
            vocab[added["content"]] = added["id"]
        tokens = [""] * (max(vocab.values()) + 1)
        for t, i in vocab.items():
            tokens[i] = t
        special = [a["id"] for a in tj.get("added_tokens", [])]
        cfg_path = directory / "tokenizer_config.json"
        cfg: dict[str, Any] = (json.loads(cfg_path.read_text(encoding="utf-8"))
                               if cfg_path.exists() else {})

        def tok_id(key: str) -> int | None:
            v = cfg.get(key)
            if isinstance(v, dict):
                v = v.get("content")
            return vocab.get(v) if isinstance(v, str) else None

        return cls(tokens, model.get("merges", []), special, pre=_hf_pre(tj.get("pre_tokenizer")),
                   chat_template=cfg.get("chat_template"), bos_id=tok_id("bos_token"),
                   eos_id=tok_id("eos_token"), add_bos=bool(cfg.get("add_bos_token", False)))

    # ---- encode / decode

    def _bpe(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = [self._byte_enc[b] for b in word.encode("utf-8")]
        ranks = self.ranks
        while len(parts) > 1:
            best, best_rank = -1, None
            for i in range(len(parts) - 1):
                r = ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best_rank is None:
                break
            a, b = parts[best], parts[best + 1]
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids: list[int] = []
        for p in parts:
            tid = self.vocab.get(p)
            if tid is not None:
                ids.append(tid)
            else:  # not in the vocabulary: fall back to its single bytes (llama.cpp does too)
                ids.extend(self.vocab[c] for c in p if c in self.vocab)
        if len(self._cache) < 100_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str, parse_special: bool = True,
               add_bos: bool | None = None) -> list[int]:
        """Token ids of ``text``; special-token strings become their single id unless
        ``parse_special`` is false.  A BOS is prepended only if the model asks for it."""
        ids: list[int] = []
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids.append(self.bos_id)
        chunks: list[tuple[str, bool]] = []
        if parse_special and self._special_re is not None:
            last = 0
            for m in self._special_re.finditer(text):
                if m.start() > last:
                    chunks.append((text[last:m.start()], False))
                chunks.append((m.group(), True))
                last = m.end()
            if last < len(text):
                chunks.append((text[last:], False))
        else:
            chunks.append((text, False))
        for chunk, is_special in chunks:
            if is_special:
                ids.append(self.vocab[chunk])
                continue
            for piece in _split(chunk, self.patterns):
                ids.extend(self._bpe(piece))
        return ids

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids`` (invalid UTF-8, e.g. a cut multi-byte character, becomes U+FFFD)."""
        out = bytearray()
        for i in ids:
            tok = self.tokens[i]
            if i in self.special_ids:
                if not skip_special:
                    out += tok.encode("utf-8")
                continue
            for ch in tok:
                b = self._byte_dec.get(ch)
                out += bytes([b]) if b is not None else ch.encode("utf-8")
        return out.decode("utf-8", errors="replace")

    def token_text(self, i: int) -> str:
        return self.decode([i])

    # ---- chat

    def apply_chat_template(self, messages: Sequence[dict[str, str]],
                            add_generation_prompt: bool = True) -> str:
        """The conversation rendered with the model's own Jinja chat template (sandboxed)."""
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])

        def raise_exception(msg: str) -> None:
            raise ValueError(f"chat template: {msg}")

        env.globals["raise_exception"] = raise_exception
        tmpl = env.from_string(self.chat_template)
        bos = self.tokens[self.bos_id] if self.bos_id is not None else ""
        eos = self.tokens[self.eos_id] if self.eos_id is not None else ""
        return tmpl.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                           bos_token=bos, eos_token=eos)

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Prompt ids for a chat, ready for generation (the assistant turn opened)."""
        return self.encode(self.apply_chat_template(messages, add_generation_prompt=True))


def _hf_pre(pre: dict[str, Any] | None) -> str:
    """The llama.cpp pre-tokenizer name equivalent to an HF pre_tokenizer description."""
    if not pre:
        return "gpt2"
    items = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    digits = any(p.get("type") == "Digits" and p.get("individual_digits") for p in items)
    for p in items:
        pattern = (p.get("pattern") or {}).get("Regex", "")
        if "\\p{N}{1,3}" in pattern:
            return "llama3"
    return "smollm" if digits else "gpt2"


@lru_cache(maxsize=8)
def _load(path: str) -> Tokenizer:
    p = Path(path)
    return Tokenizer.from_hf(p) if p.is_dir() else Tokenizer.from_gguf(p)


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """The tokenizer of a GGUF file or HF directory (default: the shipped SmolLM2), cached."""
    from payloads.llm.model import default_model_path

    p = Path(path) if path is not None else default_model_path()
    return _load(str(p.resolve()))
