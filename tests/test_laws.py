"""The law table (configs/laws.yaml) and detectors.laws: loading, resolving, reporting unknown ids."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import yaml

from detectors.laws import (
    DEFAULT_LAWS,
    LawTable,
    LawTableError,
    UnknownLawRefError,
    load_laws,
    split_refs,
)

LAW_MAP = Path(__file__).resolve().parents[1] / "tools" / "law_map.yaml"


@pytest.fixture(scope="module")
def table() -> LawTable:
    return load_laws()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "laws.yaml"
    p.write_text(text, encoding="utf-8")
    return p


MINIMAL = """\
laws:
  - id: adlaw
    name: 中华人民共和国广告法
    short: 广告法
    version: 2021修正
    adopted: 2021-04-29
    effective: 2021-04-29
    source: https://example.org/adlaw
    verified: true
    articles:
      - id: adlaw.9.3
        number: 9
        item: 3
        title: 绝对化用语
        summary: 广告不得使用“国家级”、“最高级”、“最佳”等用语。
        verified: true
"""


def test_shipped_table_loads(table: LawTable) -> None:
    assert DEFAULT_LAWS.is_file()
    assert len(table.laws) >= 15
    for required in (
        "aucl",
        "adlaw",
        "price",
        "prc_pricing_rules_2022",
        "promo_rules_2020",
        "livecommerce_2026",
        "livemarketing_2021",
        "anti_pyramid",
        "wildlife",
        "product_quality",
        "trademark",
        "consumer",
        "ecommerce",
        "foodsafety",
        "cosmetics",
        "medical_devices",
    ):
        assert required in table.laws, required


def test_article_ids_are_unique_across_the_table() -> None:
    raw = yaml.safe_load(DEFAULT_LAWS.read_text(encoding="utf-8"))
    ids = [a["id"] for law in raw["laws"] for a in law.get("articles", [])]
    assert len(ids) == len(set(ids))
    law_ids = [law["id"] for law in raw["laws"]]
    assert len(law_ids) == len(set(law_ids))


def test_every_article_has_summary_and_verified_flag(table: LawTable) -> None:
    for law, art in table.articles.values():
        assert art.summary and art.title, art.id
        assert art.id.startswith(law.id + ".")
    for law in table.laws.values():
        if law.verified:
            assert law.source and law.source.startswith("http"), law.id


def test_resolve_formats_one_id(table: LawTable) -> None:
    res = table.resolve("adlaw.9.3")
    assert res.display == "广告法(2021修正) 第9条第(三)项"
    (c,) = res.citations
    assert (c.law_id, c.short_name, c.version) == ("adlaw", "广告法", "2021修正")
    assert c.law_name == "中华人民共和国广告法"
    assert c.article is not None and (c.article.number, c.article.item) == (9, 3)


def test_resolve_formats_a_list_and_a_string_alike(table: LawTable) -> None:
    a = table.resolve("adlaw.9.3; aucl.9")
    b = table.resolve(["adlaw.9.3", "aucl.9"])
    assert a == b
    assert a.display == "广告法(2021修正) 第9条第(三)项; 反不正当竞争法(2025修订) 第9条"
    assert [c.law_id for c in a.citations] == ["adlaw", "aucl"]
    assert a.citations[1].effective == date(2025, 10, 15)


def test_resolve_paragraph_item_and_whole_law(table: LawTable) -> None:
    assert table.resolve("trademark.14.p5").display == "商标法(2019修正) 第14条第5款"
    assert table.resolve("foodsafety.34.10").display == "食品安全法(2021修正) 第34条第(十)项"
    whole = table.resolve("firearms")
    assert whole.display == "枪支管理法(2015修正)"
    assert whole.citations[0].article is None


def test_unknown_ids_are_reported(table: LawTable) -> None:
    with pytest.raises(UnknownLawRefError) as exc:
        table.resolve("adlaw.9.3; aucl.99; nolaw.1")
    assert exc.value.unknown == ["aucl.99", "nolaw.1"]
    assert "aucl.99" in str(exc.value) and "nolaw.1" in str(exc.value)
    assert table.unknown(["adlaw.9.3", "adlaw.9.12"]) == ["adlaw.9.12"]
    assert table.check(["adlaw.9.3", "广告法 第9条(三)"]) == [
        "unknown law reference '广告法' in '广告法 第9条(三)'",
        "unknown law reference '第9条(三)' in '广告法 第9条(三)'",
    ]
    assert table.check(["adlaw.9.3; aucl.9"]) == []
    with pytest.raises(LawTableError):
        table.resolve(" ; ")


def test_split_refs() -> None:
    assert split_refs("adlaw.9.3; aucl.9；price.14.4,  ecommerce.17") == [
        "adlaw.9.3",
        "aucl.9",
        "price.14.4",
        "ecommerce.17",
    ]
    assert split_refs(["a.1", "b.2; c.3"]) == ["a.1", "b.2", "c.3"]


def test_aucl_2025_numbering(table: LawTable) -> None:
    law = table.laws["aucl"]
    assert law.version == "2025修订"
    assert law.effective == date(2025, 10, 15)
    assert table.articles["aucl.9"][1].title == "虚假宣传"
    assert table.articles["aucl.11"][1].title == "不当有奖销售"
    assert table.articles["aucl.12"][1].title == "商业诋毁"
    assert table.articles["aucl.7"][1].title == "混淆行为"
    # the old numbers now mean something else
    assert table.articles["aucl.8"][1].title == "商业贿赂"
    assert "aucl.10" not in table.articles


def test_law_map_uses_current_aucl_numbers(table: LawTable) -> None:
    mapping = yaml.safe_load(LAW_MAP.read_text(encoding="utf-8"))
    lists = [entry["ids"] + entry.get("also", []) for entry in mapping["map"].values()]
    lists += list(mapping["components"].values())
    aucl = {r for ids in lists for r in ids if r == "aucl" or r.startswith("aucl.")}
    assert aucl, "the packs cite the AUCL"
    assert {r.split(".")[1] for r in aucl} <= {"7", "9", "11", "12"}
    assert "aucl.8" not in aucl and "aucl.10" not in aucl
    assert mapping["components"]["反不正当竞争法 第6条"] == ["aucl.7"]
    assert mapping["components"]["反不正当竞争法 第8条"] == ["aucl.9"]
    assert mapping["components"]["反不正当竞争法 第10条"] == ["aucl.11"]
    assert mapping["components"]["反不正当竞争法 第11条"] == ["aucl.12"]
    assert mapping["map"]["电子商务法 第17条; 反不正当竞争法 第8条"]["ids"] == ["ecommerce.17", "aucl.9"]
    assert mapping["map"]["反不正当竞争法 第10条"]["ids"] == ["aucl.11"]
    assert mapping["map"]["反不正当竞争法 第11条; 广告法 第13条"]["ids"] == ["aucl.12", "adlaw.13"]


def test_law_map_resolves_entirely(table: LawTable) -> None:
    mapping = yaml.safe_load(LAW_MAP.read_text(encoding="utf-8"))
    refs = [entry["ids"] for entry in mapping["map"].values()]
    refs += [entry.get("also", []) for entry in mapping["map"].values()]
    refs += list(mapping["components"].values())
    refs += [entry["ids"] + entry.get("also", []) for entry in mapping["hard_coded"]]
    assert table.check(refs) == []


def test_shipped_rules_cite_current_articles_by_id() -> None:
    """Every shipped rule cites at least one article of the table by id (resolved on load), and no
    shipped rule still cites the pre-2025 AUCL numbering in free text."""
    from detectors.engine import RuleSet

    rs = RuleSet.load()
    root = Path(__file__).resolve().parents[1]
    raw = [
        line.strip().partition(":")[2].split("#", 1)[0].strip()
        for f in sorted((root / "configs" / "rules").glob("*.yaml"))
        for line in f.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("law:")
    ]
    table = load_laws()
    by_short = {law.short: lid for lid, law in table.laws.items()}

    def free_text_the_table_holds(v: str) -> list[str]:
        """Free-text parts that cite an article the table has (they should cite its id)."""
        bad = []
        for part in (p.strip() for p in v.split(";")):
            if not part or part.split()[0] in table:
                continue
            for short, lid in by_short.items():
                m = re.match(rf"^{re.escape(short)}(?:\(2025修订\))? 第(\d+)条$", part)
                if m and f"{lid}.{m.group(1)}" in table:
                    bad.append(part)
        return bad

    assert raw and any(p.split()[0] in table for v in raw for p in v.split(";") if p.strip())
    assert not [b for v in raw for b in free_text_the_table_holds(v)]
    assert all("反不正当竞争法 第8条" not in r.law for r in rs.rules)
    assert any("反不正当竞争法(2025修订) 第9条" in r.law for r in rs.rules)


def test_livecommerce_2026_in_force_from_feb_2026(table: LawTable) -> None:
    law = table.laws["livecommerce_2026"]
    assert law.name == "直播电商监督管理办法"
    assert law.effective == date(2026, 2, 1)
    assert table.articles["livecommerce_2026.34"][1].title == "虚假宣传"
    assert table.articles["livecommerce_2026.36"][1].title == "商业诋毁"


def test_loader_errors_name_file_and_field(tmp_path: Path) -> None:
    good = _write(tmp_path, MINIMAL)
    assert load_laws(good).resolve("adlaw.9.3").display == "广告法(2021修正) 第9条第(三)项"

    bad_id = _write(tmp_path, MINIMAL.replace("id: adlaw.9.3", "id: adlaw.9.4"))
    with pytest.raises(
        LawTableError,
        match=r"laws\.yaml: laws\[0\]\(adlaw\)\.articles\[0\]\(adlaw\.9\.4\): article id .*does not agree",
    ):
        load_laws(bad_id)

    bad_date = _write(tmp_path, MINIMAL.replace("effective: 2021-04-29", "effective: soon"))
    with pytest.raises(LawTableError, match=r"laws\.yaml: laws\[0\]\(adlaw\)\.effective: "):
        load_laws(bad_date)

    extra = _write(
        tmp_path,
        MINIMAL.replace("    verified: true\n    articles:", "    verified: true\n    law: x\n    articles:"),
    )
    with pytest.raises(LawTableError, match=r"laws\[0\]\(adlaw\)\.law: Extra inputs"):
        load_laws(extra)

    dup = _write(tmp_path, MINIMAL + MINIMAL.split("laws:\n", 1)[1])
    with pytest.raises(LawTableError, match=r"laws\.yaml: laws: .*law ids appear twice: adlaw"):
        load_laws(dup)

    with pytest.raises(LawTableError, match=r"missing\.yaml: \(file\)"):
        load_laws(tmp_path / "missing.yaml")

    broken = _write(tmp_path, "laws: [\n")
    with pytest.raises(LawTableError, match=r"laws\.yaml:[0-9]+: YAML error"):
        load_laws(broken)

    no_such_day = _write(tmp_path, MINIMAL.replace("effective: 2021-04-29", "effective: 2021-13-01"))
    with pytest.raises(LawTableError, match=r"laws\.yaml:[0-9]+: .*month must be"):
        load_laws(no_such_day)

    not_a_table = _write(tmp_path, "- adlaw\n")
    with pytest.raises(LawTableError, match=r"laws\.yaml: \(top\): expected a mapping"):
        load_laws(not_a_table)
