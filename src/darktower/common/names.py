"""Who a participant is, as others see it: the user id rule and the display name rule.

The GC checks both where a joiner comes in (a join body, an access token's `sub` and `name`);
the access-token tools check them before minting. One rule, here, so a name one side accepts
is never refused by the other.

* user id: 1 to 64 of ASCII letters, digits and `.`, `_`, `-`, `@` (e-mail-like ids): safe in
  logs, URLs and JSON without escaping, and nothing that could pose as another user's id
  through Unicode;
* display name: NFC-normalized (so one name has one encoding, a precomposed `é` and `e` +
  combining accent compare equal), trimmed of surrounding white space, then 1 to
  `MAX_DISPLAY_NAME_CHARS` characters, none of them a control character (Cc), a format
  character (Cf: zero-width spaces and joiners, the bidirectional embeddings, overrides and
  isolates, the soft hyphen, …), a surrogate (Cs), a private-use character (Co) or a line or
  paragraph separator (Zl, Zp). Invisible and reordering characters are what let one name
  pose as another on screen ("Admin\u200b", "evil\u202egnp.exe").

  Not refused: letters of any script, so a name written with a Cyrillic look-alike of a
  Latin letter ("Admin" with a Cyrillic "A") passes. A display name is not an identity: who a
  participant is comes from the access token's `sub`, which is ASCII; the name is only what
  others read.
"""

from __future__ import annotations

import re
import unicodedata

from darktower.common.errors import InvalidField
from darktower.common.limits import MAX_DISPLAY_NAME_CHARS

__all__ = [
    "USER_ID_PATTERN",
    "normalize_display_name",
    "validate_user_id",
]

USER_ID_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
_USER_ID = re.compile(USER_ID_PATTERN)
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def validate_user_id(value: str, field: str = "user_id") -> str:
    """`value` if it is a user id by the rule above; else `InvalidField` for `field`."""
    if not _USER_ID.fullmatch(value):
        raise InvalidField(field, "must be 1 to 64 of A-Z a-z 0-9 . _ - @")
    return value


def normalize_display_name(value: str, field: str = "display_name") -> str:
    """`value` NFC-normalized and trimmed, if it is a display name by the rule above; else
    `InvalidField` for `field`: `must not be empty`, `must be at most 100 characters`,
    `must not contain control, format or invisible characters`."""
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise InvalidField(field, "must not be empty")
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidField(field, f"must be at most {MAX_DISPLAY_NAME_CHARS} characters")
    if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in name):
        raise InvalidField(field, "must not contain control, format or invisible characters")
    return name
