"""One normaliser for every name and free-text field at every entrance (REST, AMQP, SOAP, window).

Whatever enters the hub must later leave it in JSON, XML (SOAP, legacy pushes) and public pages, so
text is normalised once on the way in (NFC, invisible padding stripped) and refused when it carries
characters that XML 1.0 cannot hold or that make a name invisible. Each refusal names its rule.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Characters that render as nothing; at the edges of a value they are padding and are stripped.
INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad\u2061\u2062\u2063\u2064\u034f\u115f\u1160\u3164\uffa0"
)
# Whitespace Python's str.strip() knows plus the invisible ones: stripped at both ends.
_EDGE = "".join(INVISIBLE) + " \t\n\r\f\v\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006" \
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u0085"
# Free text may keep line structure; everything else below U+0020 is refused.
FREE_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r")


@dataclass(frozen=True)
class TextRuleViolation(ValueError):
    """A value broke one rule; ``rule`` is a stable slug, ``message`` is for applicants (Chinese)."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


def _is_noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _bad_character(char: str, *, allow_newlines: bool) -> TextRuleViolation | None:
    code = ord(char)
    if allow_newlines and char in FREE_TEXT_CONTROLS_ALLOWED:
        return None
    category = unicodedata.category(char)
    if category == "Cc":  # C0 controls, DEL, C1 controls (NEL U+0085 among them)
        return TextRuleViolation("no_control_characters", f"不得包含控制字符 U+{code:04X}")
    if category == "Cs" or _is_noncharacter(code):
        return TextRuleViolation("valid_characters", f"不得包含非字符码位 U+{code:04X}")
    if category in ("Zl", "Zp") and not allow_newlines:
        return TextRuleViolation("single_line", f"不得包含换行符 U+{code:04X}")
    return None


def normalize_text(value: str, *, max_length: int | None = None, allow_newlines: bool = True,
                   allow_blank: bool = False) -> str:
    """NFC, edges stripped of whitespace and invisible characters; refuses what no output can carry.

    Raises TextRuleViolation with rule ``not_blank`` (nothing visible left), ``no_control_characters``,
    ``valid_characters`` (surrogates, U+FFFE and other noncharacters), ``single_line`` or ``max_length``.
    """
    text = unicodedata.normalize("NFC", value).strip(_EDGE)
    # Printable text (no Cc, Cs, Cn — noncharacters among them —, Zl or Zp) breaks no character rule:
    # the common case skips the per-character walk, which still names the first bad character otherwise.
    if not text.isprintable():
        for char in text:
            violation = _bad_character(char, allow_newlines=allow_newlines)
            if violation is not None:
                raise violation
    if not allow_newlines:
        text = " ".join(text.split("\n"))
    if not allow_blank and not any(_is_visible(c) for c in text):
        raise TextRuleViolation("not_blank", "不得为空或仅含空白、不可见字符")
    if max_length is not None and len(text) > max_length:
        raise TextRuleViolation("max_length", f"长度不得超过 {max_length} 个字符")
    return text


def normalize_name(value: str, *, max_length: int = 128) -> str:
    """A person's or organisation's name: one line, no invisible characters inside either."""
    text = normalize_text(value, max_length=max_length, allow_newlines=False)
    if text.isprintable() and INVISIBLE.isdisjoint(text):
        return text  # no Cf character (none is printable) and none of the invisible letters
    for char in text:
        if char in INVISIBLE or unicodedata.category(char) == "Cf":
            raise TextRuleViolation("no_invisible_characters", f"名称中不得包含不可见字符 U+{ord(char):04X}")
    return text


def _is_visible(char: str) -> bool:
    return not (char.isspace() or char in INVISIBLE or unicodedata.category(char) in ("Cf", "Zs", "Cc"))


def xml_safe(value: str) -> bool:
    """True when every character may appear in an XML 1.0 document."""
    for char in value:
        code = ord(char)
        if code in (0x9, 0xA, 0xD):
            continue
        if code < 0x20 or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            return False
    return True
