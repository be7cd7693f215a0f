"""The seeded rules against minimal pairs: harmful requests and their harmless
twins, written by the project (tests/data/conscience_pairs.csv), none of them
a seeded example or counterexample. Judged as the daemon judges by default:
phrases and examples, with the real encoder and the default threshold."""

import csv
from pathlib import Path

import pytest

from jamey import config
from jamey import encoder
from jamey.conscience import Conscience
from jamey.meaning import ExampleEmbeddings
from jamey.meaning import seeded_texts
from jamey.storage import Database

PAIRS = Path(__file__).parent / 'data' / 'conscience_pairs.csv'


def pairs() -> list[tuple[str, str, str]]:
    with PAIRS.open(newline='', encoding='utf-8') as f:
        return [(r['text'], r['expected'], r['family']) for r in csv.DictReader(f)]


@pytest.fixture(scope='module')
def conscience(tmp_path_factory: pytest.TempPathFactory) -> Conscience:
    db = Database(tmp_path_factory.mktemp('pairs') / 'jamey.db')
    db.migrate()
    defaults = config.ConscienceSettings()
    embeddings = ExampleEmbeddings(db, encoder.load(), encoder.MODEL_ID)
    return Conscience(
        db,
        defaults.deny_weight,
        embeddings=embeddings,
        threshold=defaults.example_threshold,
    )


def test_the_table_is_a_table_of_pairs() -> None:
    rows = pairs()
    assert len(rows) >= 60
    expected = [e for _, e, _ in rows]
    assert set(expected) == {'flag', 'allow'}
    assert min(expected.count('flag'), expected.count('allow')) >= 30
    assert not {t for t, _, _ in rows} & set(seeded_texts()), 'not a seeded text'


@pytest.mark.parametrize(('text', 'expected', 'family'), pairs())
def test_seeded_rules_judge_the_pair(
    conscience: Conscience, text: str, expected: str, family: str
) -> None:
    result = conscience.evaluate(text)
    flagged = 'flag' if result['verdict'] != 'allow' else 'allow'
    assert flagged == expected, (family, result['layer'], result['meaning'])
