from collections import Counter
from pathlib import Path

import pytest

from services.common.regions import (
    Region,
    RegionTable,
    default_regions,
    normalise_region_code,
)


@pytest.fixture(scope="module")
def table() -> RegionTable:
    return RegionTable.load()


def test_counts_follow_kepmendagri_2025(table: RegionTable) -> None:
    kinds = Counter(r.kind for r in table)
    assert kinds == {"province": 38, "regency": 416, "city": 98}
    assert len(table) == 38 + 514
    assert len(table.provinces()) == 38


@pytest.mark.parametrize(
    ("code", "name", "kind"),
    [
        ("51", "Bali", "province"),
        ("51.08", "Kabupaten Buleleng", "regency"),
        ("51.71", "Kota Denpasar", "city"),
        ("31", "Daerah Khusus Ibukota Jakarta", "province"),
        ("31.01", "Kabupaten Administrasi Kepulauan Seribu", "regency"),
        ("31.71", "Kota Administrasi Jakarta Pusat", "city"),
        ("11.10", "Kabupaten Aceh Singkil", "regency"),
        ("53.02", "Kabupaten Timor Tengah Selatan", "regency"),
        ("91", "Papua", "province"),
        ("91.71", "Kota Jayapura", "city"),
        ("92", "Papua Barat", "province"),
        ("93", "Papua Selatan", "province"),
        ("93.01", "Kabupaten Merauke", "regency"),
        ("94", "Papua Tengah", "province"),
        ("94.04", "Kabupaten Mimika", "regency"),
        ("95", "Papua Pegunungan", "province"),
        ("95.01", "Kabupaten Jayawijaya", "regency"),
        ("96", "Papua Barat Daya", "province"),
        ("96.71", "Kota Sorong", "city"),
    ],
)
def test_known_codes(table: RegionTable, code: str, name: str, kind: str) -> None:
    region = table.get(code)
    assert region is not None
    assert (region.name, region.kind) == (name, kind)
    assert region.province_code == code[:2]


def test_papua_splits_moved_regencies_to_new_provinces(table: RegionTable) -> None:
    # Pre-2022 datasets have Mimika as 94.12 under Papua=94 and Sorong under Papua Barat=91.
    assert "94.12" not in table
    assert table.get("96.01") == Region(
        "96.01", "Kabupaten Sorong", "regency", "96", "Asia/Jayapura"
    )
    assert [r.code for r in table.children("93")] == ["93.01", "93.02", "93.03", "93.04"]
    assert len(table.children("91")) == 9
    assert len(table.children("96")) == 6


def test_every_region_has_an_existing_province(table: RegionTable) -> None:
    for region in table:
        province = table.province_of(region.code)
        assert province is not None and province.is_province
        assert province.code == region.province_code
        assert region.code.startswith(province.code)
        if not region.is_province:
            assert region in table.children(province.code)
            assert region.timezone == province.timezone


def test_city_and_regency_codes_follow_the_numbering_rule(table: RegionTable) -> None:
    for region in table:
        if region.is_province:
            continue
        local = int(region.code[3:])
        if region.kind == "city":
            assert 71 <= local <= 99 and region.name.startswith("Kota ")
        else:
            assert 1 <= local <= 69 and region.name.startswith("Kabupaten ")


def test_children_are_sorted_and_exclude_the_province(table: RegionTable) -> None:
    bali = table.children("51")
    assert [r.code for r in bali] == [f"51.0{i}" for i in range(1, 9)] + ["51.71"]
    assert table.children("99") == []
    assert table.children("nonsense") == []


@pytest.mark.parametrize(
    ("code", "zone"),
    [
        ("11.71", "Asia/Jakarta"),  # Banda Aceh
        ("31.71", "Asia/Jakarta"),
        ("61.71", "Asia/Jakarta"),  # Pontianak, Kalimantan Barat
        ("62.71", "Asia/Jakarta"),  # Palangka Raya, Kalimantan Tengah
        ("63.71", "Asia/Makassar"),  # Banjarmasin, Kalimantan Selatan
        ("64.72", "Asia/Makassar"),  # Samarinda
        ("65.71", "Asia/Makassar"),  # Tarakan, Kalimantan Utara
        ("51.08", "Asia/Makassar"),
        ("52.71", "Asia/Makassar"),  # Mataram
        ("53.71", "Asia/Makassar"),  # Kupang
        ("73.71", "Asia/Makassar"),  # Makassar
        ("76.02", "Asia/Makassar"),  # Mamuju
        ("81.71", "Asia/Jayapura"),  # Ambon
        ("82.71", "Asia/Jayapura"),  # Ternate
        ("91.71", "Asia/Jayapura"),
        ("95.01", "Asia/Jayapura"),
        ("96.71", "Asia/Jayapura"),
    ],
)
def test_time_zones(table: RegionTable, code: str, zone: str) -> None:
    region = table.get(code)
    assert region is not None and region.timezone == zone


def test_zone_totals(table: RegionTable) -> None:
    zones = Counter(r.timezone for r in table.provinces())
    assert zones == {"Asia/Jakarta": 18, "Asia/Makassar": 12, "Asia/Jayapura": 8}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("51.08", "51.08"),
        ("5108", "51.08"),
        (" 51.08 ", "51.08"),
        ("\t5108\n", "51.08"),
        ("51", "51"),
        (" 96 ", "96"),
        ("99.99", "99.99"),  # shape only, not existence
        ("", None),
        ("5", None),
        ("510", None),
        ("51.8", None),
        ("51.080", None),
        ("51.08.01", None),
        ("510801", None),
        ("51-08", None),
        ("51 08", None),
        ("ab.cd", None),
        ("٥١٠٨", None),  # non-ASCII digits
    ],
)
def test_normalise_region_code(raw: str, expected: str | None) -> None:
    assert normalise_region_code(raw) == expected


def test_lookups_accept_undotted_codes(table: RegionTable) -> None:
    assert table.get("5108") == table.get("51.08")
    assert "5108" in table
    assert " 51.08 " in table
    assert "99.99" not in table
    assert 5108 not in table
    assert table.get("garbage") is None
    assert table.province_of("5171") == table.get("51")
    assert table.province_of("51") == table.get("51")
    assert table.province_of("99.01") is None


def test_region_is_frozen(table: RegionTable) -> None:
    region = table.get("51")
    assert region is not None and region.is_province
    with pytest.raises(AttributeError):
        region.name = "x"  # type: ignore[misc]


def test_default_regions_is_cached_and_load_is_not() -> None:
    assert default_regions() is default_regions()
    assert RegionTable.load() is not RegionTable.load()
    assert len(default_regions()) == 552


def test_load_from_another_file(tmp_path: Path) -> None:
    path = tmp_path / "mini.csv"
    path.write_text(
        "code,name,kind,province_code,timezone\n"
        "51,Bali,province,51,Asia/Makassar\n"
        "51.08,Kabupaten Buleleng,regency,51,Asia/Makassar\n",
        encoding="utf-8",
    )
    mini = RegionTable.load(path)
    assert len(mini) == 2
    assert [r.code for r in mini.children("51")] == ["51.08"]


@pytest.mark.parametrize(
    "row",
    [
        "51.08,Kabupaten Buleleng,regency,52,Asia/Makassar",  # wrong province
        "51.08,Kabupaten Buleleng,village,51,Asia/Makassar",  # bad kind
        "51.08,Kabupaten Buleleng,regency,51,Asia/Bangkok",  # bad zone
        "5108,Kabupaten Buleleng,regency,51,Asia/Makassar",  # not dotted
        "51.08,Kabupaten Buleleng,province,51,Asia/Makassar",  # kind/code mismatch
        "52.01,Kabupaten Lombok Barat,regency,52,Asia/Makassar",  # province missing
        "51,Bali again,province,51,Asia/Makassar",  # duplicate
    ],
)
def test_load_rejects_bad_rows(tmp_path: Path, row: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        f"code,name,kind,province_code,timezone\n51,Bali,province,51,Asia/Makassar\n{row}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError):
        RegionTable.load(path)
