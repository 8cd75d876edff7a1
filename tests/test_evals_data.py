"""Datasets: the lesson files in every format, column mapping, label normalisation, and each bad file's
one clear error, all before any model is involved."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from llmlab.errors import DataError
from llmlab.evals.data import load_dataset
from llmlab.tasks import load_task

SENTIMENT = load_task("sentiment")


@pytest.fixture
def film(lesson_data):
    return lesson_data / "sentiment_film_data.tsv"


def test_lesson_tsv(film):
    d = load_dataset(film, SENTIMENT)
    assert len(d) == 100 and (d.text_col, d.label_col) == ("text", "label")
    assert d.frame["gold"].value_counts().to_dict() == {"positive": 40, "neutral": 37, "negative": 23}
    assert list(d.frame["id"][:3]) == ["1", "2", "3"]
    assert d.frame["text"][99].startswith("Dracula") or len(d.frame["text"][99]) > 20  # last line, no newline


def test_lesson_csvs_find_their_columns(lesson_data):
    d = load_dataset(lesson_data / "sentiment_classification_dataset.csv", SENTIMENT)
    assert (d.text_col, d.label_col, len(d)) == ("sentence", "ground_truth_label", 15)
    topic = load_dataset(lesson_data / "topic_classification_dataset.csv", load_task("topic"))
    assert topic.frame["gold"].value_counts().to_dict() == dict.fromkeys(load_task("topic").labels, 4)


def test_same_items_from_jsonl_parquet_and_renamed_columns(film, tmp_path):
    reference = load_dataset(film, SENTIMENT)
    raw = pd.read_csv(film, sep="\t")
    renamed = raw.rename(columns={"text": "Review Body", "label": "Verdict"})
    renamed["Verdict"] = renamed["Verdict"].str.upper() + " "  # case and spaces are normalised
    jsonl = tmp_path / "film.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in renamed.to_dict("records")) + "\n")
    parquet = tmp_path / "film.parquet"
    renamed.to_parquet(parquet)
    for path in (jsonl, parquet):
        d = load_dataset(path, SENTIMENT, text_col="Review Body", label_col="Verdict")
        assert d.sha256 == reference.sha256, path
    # without the mapping the label column is recognised by its values, the text one by its name
    d = load_dataset(parquet, SENTIMENT)
    assert (d.text_col, d.label_col) == ("Review Body", "Verdict") and d.sha256 == reference.sha256
    assert any("Verdict" in n for n in d.notes)


def test_label_map_and_id_column(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("uid,sentence,stars\na7,Loved it,1\nb2,Hated it,0\nc9,It exists,2\n")
    d = load_dataset(path, SENTIMENT, label_col="stars", label_map={"1": "positive", "0": "negative",
                                                                    "2": "neutral"})
    assert list(d.frame["gold"]) == ["positive", "negative", "neutral"]
    d = load_dataset(path, SENTIMENT, id_col="uid", label_col="stars", label_map={"1": "pos", "0": "neg",
                                                                                  "2": "neu"})
    assert list(d.frame["id"]) == ["a7", "b2", "c9"]


def test_classify_keeps_the_files_labels(lesson_data):
    d = load_dataset(lesson_data / "topic_classification_dataset.csv", load_task("classify"))
    assert d.labels == ["entertainment", "finance", "politics", "science", "sports"]


def bad(path, message, **kw):
    with pytest.raises(DataError) as info:
        load_dataset(path, SENTIMENT, **kw)
    text = str(info.value)
    assert message in text, text
    assert "\n" not in text  # one line
    return text


def test_missing_file_directory_and_format(tmp_path):
    bad(tmp_path / "nope.csv", "dataset not found")
    bad(tmp_path, "is a directory")
    (tmp_path / "data.xlsx").write_text("x")
    bad(tmp_path / "data.xlsx", "cannot tell the format of data.xlsx")


def test_empty_and_header_only(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    bad(tmp_path / "empty.csv", "is empty")
    (tmp_path / "blank.tsv").write_text("\n\n  \n")
    bad(tmp_path / "blank.tsv", "is empty")
    (tmp_path / "header.csv").write_text("text,label\n")
    bad(tmp_path / "header.csv", "has no rows (only a header)")


def test_missing_columns_list_what_exists(film):
    text = bad(film, "has no column 'review'", text_col="review")
    assert "its columns are: text, label" in text
    bad(film, "has no column 'gold'", label_col="gold")


def test_unnamed_columns_are_found_by_their_values(film, tmp_path):
    raw = pd.read_csv(film, sep="\t").rename(columns={"text": "blurb", "label": "mood"})
    raw.insert(0, "uid", [f"r{i}" for i in range(len(raw))])
    raw.to_json(tmp_path / "odd.jsonl", orient="records", lines=True)
    d = load_dataset(tmp_path / "odd.jsonl", SENTIMENT)
    assert (d.text_col, d.label_col) == ("blurb", "mood") and len(d) == 100
    assert any("longest strings" in n for n in d.notes) and any("sentiment labels" in n for n in d.notes)


def test_unknown_columns_cannot_be_guessed(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("a,b\nfoo,bar\nbaz,qux\n")
    bad(path, "cannot tell which column of")


def test_labels_outside_the_task(film, tmp_path):
    rows = pd.read_csv(film, sep="\t").head(12)
    rows.loc[3, "label"] = "very positive"
    rows.loc[[5, 8], "label"] = "sarcastic"
    path = tmp_path / "extra.tsv"
    rows.to_csv(path, sep="\t", index=False)
    text = bad(path, "labels outside the sentiment task's set (positive, negative, neutral)")
    assert "'sarcastic' (2 rows, first row 6)" in text and "'very positive' (1 rows, first row 4)" in text
    assert "--label-map" in text


def test_not_utf8(film, tmp_path):
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("text,label\nok,positive\nCafé crème was lovely,positive\n".encode("latin-1"))
    bad(latin, "is not UTF-8 text (byte 0xe9 on line 3)")


def test_rows_without_text_or_label(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("text,label\nfine,positive\n,negative\n   ,neutral\ngood,\n")
    bad(path, "rows 2, 3 have no text in column 'text'")
    path.write_text("text,label\nfine,positive\ngood,\n")
    bad(path, "row 2 has no label in column 'label'")


def test_malformed_files(tmp_path):
    jsonl = tmp_path / "broken.jsonl"
    jsonl.write_text('{"text": "a", "label": "positive"}\n{"text": "b", "label": \n')
    bad(jsonl, "line 2 is not valid JSON")
    csv = tmp_path / "ragged.csv"
    csv.write_text('text,label\n"unclosed quote,positive\n')
    bad(csv, "is not a well-formed CSV file")
    parquet = tmp_path / "fake.parquet"
    parquet.write_text("text,label\n")
    bad(parquet, "is not a readable Parquet file")


def test_an_id_column_named_like_a_text_is_not_the_text(tmp_path):
    rows = [("r1", "The pasta was cold and the waiter ignored us.", "BAD"),
            ("r2", "Lovely staff and the best tiramisu in town!", "Good"),
            ("r3", "It is a restaurant on the corner of Main Street.", "meh")]
    path = tmp_path / "restaurants.csv"
    pd.DataFrame(rows, columns=["review_id", "Customer Comment", "stars_verdict"]).to_csv(path, index=False)
    d = load_dataset(path, SENTIMENT, label_map={"BAD": "negative", "Good": "positive", "meh": "neutral"})
    assert (d.text_col, d.label_col) == ("Customer Comment", "stars_verdict")
    assert list(d.frame["gold"]) == ["negative", "positive", "neutral"]


def test_two_columns_under_classify_and_underscored_labels(tmp_path):
    path = tmp_path / "intents.tsv"
    path.write_text("Utterance Text\tIntent\nCan I book a table for two?\tMake Reservation\n"
                    "When do you open on Sunday?\tOpening Hours\n")
    d = load_dataset(path, load_task("classify", ["make_reservation", "opening_hours"]))
    assert d.label_col == "Intent" and list(d.frame["gold"]) == ["make_reservation", "opening_hours"]


def test_a_semicolon_separated_csv_says_so(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("Headline;Label\nStocks fall again;finance\nTeam wins the cup;sports\n")
    bad(path, "is it separated by ';'")
