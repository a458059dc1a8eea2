"""Text a tokenizer can read is valid Unicode. Python hands over bytes that are not UTF-8 as
"surrogate escapes" (a command-line argument, a line read with errors="surrogateescape": byte
0xE0 becomes U+DCE0), and JSON can spell a lone surrogate ("\\ud800"); no character is either,
and UTF-8 cannot encode them."""

from glassformer.errors import GlassformerError


def check_utf8(text: str) -> None:
    """Refuse `text` if it holds a surrogate escape or a lone surrogate, naming the first."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        what = (f"byte {code - 0xDC00:#04x}" if 0xDC80 <= code <= 0xDCFF
                else f"lone surrogate U+{code:04X}")
        raise GlassformerError(f"the text is not valid UTF-8: {what} at character "
                               f"{err.start + 1} is not part of a character; give it as UTF-8 "
                               "(e.g. convert it with `iconv -t UTF-8`)") from None
