"""Hostile rules files shared by the tests that feed them to livewatch: `rules check` in a subprocess
(test_cli_startup.py), the loader and reloading holder (test_rules_hostile.py) and a running monitor's
rules folder (faults/test_faults_rules.py)."""

from __future__ import annotations

# "billion laughs": 9 levels of 9 aliases, 10^9 leaves once expanded, ~350 bytes of text
BOMB = "pack: site\n" + "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 9) if i else ', '.join(['lol'] * 9)}]\n"
    for i in range(9)
)

# one false_claim rule with one regex (format with regex=...)
REGEX_PACK = """\
pack: site
category: false_claim
law: 广告法 第9条
rules:
  - id: site.a1.words
    code: A1
    severity: high
    regex: ["{regex}"]
    should_flag: [顶呱呱]
    should_not_flag: [很好]
"""

ADJACENT_QUANTIFIERS = "好*好*好*好*好*好*好*好*吗"  # the eight adjacent 好*
