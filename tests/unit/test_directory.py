import csv
from collections import Counter
from pathlib import Path

import pytest

from services.common.regions import RegionTable, default_regions
from services.routing.domain.directory import (
    DEFAULT_NATIONAL_CSV,
    DEFAULT_UNITS_CSV,
    TOPICS,
    Directory,
    Institution,
)


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory.seed(default_regions())


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_size_is_every_body_government_and_unit(directory: Directory) -> None:
    national = len(_rows(DEFAULT_NATIONAL_CSV))
    units = len(_rows(DEFAULT_UNITS_CSV))
    governments = len(default_regions())
    assert governments == 552
    assert len(directory) == national + governments * (1 + units)
    assert 5_000 < len(directory) < 20_000
    kinds = Counter(i.kind for i in directory.all())
    assert kinds["province"] == 38
    assert kinds["regency"] == 416
    assert kinds["city"] == 98
    assert kinds["unit"] == governments * units


def test_seed_files_use_only_known_topics_and_kinds() -> None:
    for row in _rows(DEFAULT_NATIONAL_CSV):
        assert row["id"].startswith("nasional-")
        assert row["kind"] in {"ministry", "agency", "soe"}
        assert set(filter(None, row["topics"].split(";"))) <= TOPICS
    for row in _rows(DEFAULT_UNITS_CSV):
        assert set(filter(None, row["topics"].split(";"))) <= TOPICS


def test_each_topic_has_at_most_one_national_owner() -> None:
    owners = Counter(
        topic
        for row in _rows(DEFAULT_NATIONAL_CSV)
        for topic in filter(None, row["topics"].split(";"))
    )
    assert all(n == 1 for n in owners.values()), owners


def test_national_bodies(directory: Directory) -> None:
    ids = {i.id for i in directory.all() if i.kind in {"ministry", "agency", "soe"}}
    for expected in [
        "nasional-bpjs-kesehatan",
        "nasional-bpjs-ketenagakerjaan",
        "nasional-pln",
        "nasional-pertamina",
        "nasional-kai",
        "nasional-pos-indonesia",
        "nasional-kemenkes",
        "nasional-kemendagri",
        "nasional-kemensos",
        "nasional-kemendikdasmen",
        "nasional-kemen-esdm",
        "nasional-kemenhub",
        "nasional-kemen-pu",
        "nasional-klh",
        "nasional-kemenpanrb",
    ]:
        assert expected in ids
    assert not any("ombudsman" in i or "pdam" in i for i in ids)
    ministries = [i for i in directory.all() if i.kind == "ministry"]
    assert len(ministries) == 48  # Kabinet Merah Putih: 7 coordinating + 41 ministries
    assert all(i.name.startswith("Kementerian ") for i in ministries)
    pln = directory.get("nasional-pln")
    assert pln == Institution("nasional-pln", "PLN", "soe", None, None, ("listrik",))


@pytest.mark.parametrize(
    ("topic", "owner"),
    [
        ("bpjs_kesehatan", "nasional-bpjs-kesehatan"),
        ("listrik", "nasional-pln"),
        ("bbm_lpg", "nasional-pertamina"),
        ("adminduk", "nasional-kemendagri"),
        ("bansos", "nasional-kemensos"),
        ("pendidikan", "nasional-kemendikdasmen"),
        ("layanan_kesehatan", "nasional-kemenkes"),
        ("transportasi", "nasional-kemenhub"),
        ("jalan", "nasional-kemen-pu"),
        ("sampah", "nasional-klh"),
    ],
)
def test_national_for(directory: Directory, topic: str, owner: str) -> None:
    inst = directory.national_for(topic)
    assert inst is not None and inst.id == owner


def test_national_for_unknown_topic(directory: Directory) -> None:
    assert directory.national_for("no_such_topic") is None
    assert directory.national_for("ketertiban") is None  # a purely local matter


def test_governments_and_their_names(directory: Directory) -> None:
    cases = {
        "51": ("Pemerintah Provinsi Bali", "province"),
        "51.08": ("Pemerintah Kabupaten Buleleng", "regency"),
        "51.71": ("Pemerintah Kota Denpasar", "city"),
        "31": ("Pemerintah Provinsi DKI Jakarta", "province"),
        "31.71": ("Pemerintah Kota Administrasi Jakarta Pusat", "city"),
        "96": ("Pemerintah Provinsi Papua Barat Daya", "province"),
    }
    for code, (name, kind) in cases.items():
        gov = directory.government_of(code)
        assert gov is not None
        assert (gov.id, gov.name, gov.kind) == (f"pemda-{code}", name, kind)
        assert gov.region_code == code
        assert gov.parent_id is None
    assert directory.government_of("5108") == directory.get("pemda-51.08")
    assert directory.government_of("99.99") is None
    assert directory.government_of("bogus") is None


def test_unit_for_adminduk_in_buleleng(directory: Directory) -> None:
    unit = directory.unit_for("51.08", "adminduk")
    assert unit is not None
    assert unit.id == "pemda-51.08/disdukcapil"
    assert unit.name == "Dinas Kependudukan dan Pencatatan Sipil Kabupaten Buleleng"
    assert unit.kind == "unit"
    assert unit.parent_id == "pemda-51.08"
    assert unit.region_code == "51.08"
    assert "adminduk" in unit.topics


@pytest.mark.parametrize(
    ("region", "topic", "unit_id"),
    [
        ("51.71", "sampah", "pemda-51.71/dlh"),
        ("51.71", "pencemaran", "pemda-51.71/dlh"),
        ("32.73", "jalan", "pemda-32.73/dpupr"),
        ("33.74", "ketertiban", "pemda-33.74/satpolpp"),
        ("33.74", "rokok", "pemda-33.74/dinkes"),  # first unit listing the topic
        ("35.78", "bbm_lpg", "pemda-35.78/disperindag"),
        ("35.78", "pungli", "pemda-35.78/inspektorat"),
        ("52", "bansos", "pemda-52/dinsos"),
        ("94.04", "pendidikan", "pemda-94.04/disdik"),
        ("3174", "transportasi", "pemda-31.74/dishub"),
    ],
)
def test_unit_for(directory: Directory, region: str, topic: str, unit_id: str) -> None:
    unit = directory.unit_for(region, topic)
    assert unit is not None and unit.id == unit_id


def test_unit_for_without_a_local_owner(directory: Directory) -> None:
    assert directory.unit_for("51.08", "listrik") is None
    assert directory.unit_for("51.08", "bpjs_kesehatan") is None
    assert directory.unit_for("99.99", "adminduk") is None


def test_province_units_are_named_after_the_province(directory: Directory) -> None:
    unit = directory.get("pemda-31/dinkes")
    assert unit is not None and unit.name == "Dinas Kesehatan Provinsi DKI Jakarta"
    unit = directory.get("pemda-51/dlh")
    assert unit is not None and unit.name == "Dinas Lingkungan Hidup Provinsi Bali"


def test_children_and_is_within(directory: Directory) -> None:
    units = directory.children("pemda-51.08")
    assert len(units) == len(_rows(DEFAULT_UNITS_CSV))
    assert all(u.parent_id == "pemda-51.08" and u.id.startswith("pemda-51.08/") for u in units)
    assert directory.children("pemda-51.08/disdukcapil") == []
    assert directory.children("nasional-pln") == []
    assert directory.children("nope") == []

    assert directory.is_within("pemda-51.08/disdukcapil", "pemda-51.08")
    assert directory.is_within("pemda-51.08", "pemda-51.08")
    assert not directory.is_within("pemda-51.08", "pemda-51.08/disdukcapil")
    assert not directory.is_within("pemda-51.08/disdukcapil", "pemda-51.71")
    # regional autonomy: a regency is not inside its province's government
    assert not directory.is_within("pemda-51.08", "pemda-51")
    assert not directory.is_within("pemda-51.08/dinkes", "pemda-51")
    assert not directory.is_within("unknown", "unknown")


def test_every_unit_has_its_government(directory: Directory) -> None:
    for inst in directory.all():
        if inst.kind == "unit":
            assert inst.parent_id is not None
            parent = directory.get(inst.parent_id)
            assert parent is not None and parent.region_code == inst.region_code
            assert directory.is_within(inst.id, parent.id)
        else:
            assert inst.parent_id is None


def test_seed_with_custom_files(tmp_path: Path) -> None:
    regions_csv = tmp_path / "regions.csv"
    regions_csv.write_text(
        "code,name,kind,province_code,timezone\n"
        "51,Bali,province,51,Asia/Makassar\n"
        "51.08,Kabupaten Buleleng,regency,51,Asia/Makassar\n",
        encoding="utf-8",
    )
    national = tmp_path / "national.csv"
    national.write_text("id,name,kind,topics\nnasional-pln,PLN,soe,listrik\n", encoding="utf-8")
    units = tmp_path / "units.csv"
    units.write_text(
        "slug,name,topics\ndlh,Dinas Lingkungan Hidup,sampah;pencemaran\n", encoding="utf-8"
    )
    small = Directory.seed(RegionTable.load(regions_csv), national, units)
    assert len(small) == 1 + 2 * 2
    assert {i.id for i in small.all()} == {
        "nasional-pln",
        "pemda-51",
        "pemda-51/dlh",
        "pemda-51.08",
        "pemda-51.08/dlh",
    }


def test_seed_rejects_unknown_topics(tmp_path: Path) -> None:
    units = tmp_path / "units.csv"
    units.write_text("slug,name,topics\nx,Dinas X,not_a_topic\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown topics"):
        Directory.seed(default_regions(), units_csv=units)


def test_seed_rejects_a_local_body_in_the_national_file(tmp_path: Path) -> None:
    national = tmp_path / "national.csv"
    national.write_text("id,name,kind,topics\npdam-bali,PDAM,soe,\n", encoding="utf-8")
    with pytest.raises(ValueError):
        Directory.seed(default_regions(), national_csv=national)


def test_ancestors_nearest_first_and_empty_at_the_top(directory: Directory) -> None:
    section = Institution(
        "pemda-51.08/dpupr/seksi-jalan", "Seksi Jalan", "unit", "pemda-51.08/dpupr", "51.08", ()
    )
    grown = Directory([*directory.all(), section])
    assert grown.ancestors(section.id) == ["pemda-51.08/dpupr", "pemda-51.08"]
    assert grown.ancestors("pemda-51.08/dpupr") == ["pemda-51.08"]
    assert grown.ancestors("pemda-51.08") == []
    assert grown.ancestors("nasional-pln") == []
    assert grown.ancestors("no-such-id") == []


def test_a_parent_chain_that_loops_is_refused() -> None:
    top = Institution("nasional-a", "A", "agency", None, None, ())
    with pytest.raises(ValueError, match="cycle"):
        Directory([top, Institution("u", "U", "unit", "u", None, ())])  # its own parent
    with pytest.raises(ValueError, match="cycle"):
        Directory(
            [
                top,
                Institution("u1", "U1", "unit", "u2", None, ()),
                Institution("u2", "U2", "unit", "u1", None, ()),
            ]
        )
    assert Directory([top, Institution("u", "U", "unit", "nasional-a", None, ())]).ancestors(
        "u"
    ) == ["nasional-a"]
