"""Where each table lives: the layer names and the one rule that turns (layer, table) into a URI.

Every table sits at ``<lakehouse root>/<layer>/<table>``. Assets name their layer with the
``schema`` definition metadata (:func:`in_layer`; dagster-deltalake's convention, which follows
the same rule), so asset keys stay unprefixed.

Groups follow the layers for the data (bronze, silver, gold: what the models train on) and
name the model for the rest: a model's splits and training set (layer ``ml``), and the batch
table it writes from its champion (layer ``gold``, where served tables live) sit in its group,
beside the model.
"""

import dagster as dg

BRONZE = "bronze"
SILVER = "silver"
GOLD = "gold"
ML = "ml"  # train/test splits, evaluations and training sets: the models' own tables
LAYERS = (BRONZE, SILVER, GOLD, ML)

LAYER_KEY = "schema"  # dagster-deltalake's name for it, so both IO managers agree


def table_uri(root_uri: str, layer: str, table: str) -> str:
    """The Delta table of ``table`` in ``layer``, under a folder or an object-store URI."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}: one of {', '.join(LAYERS)}")
    return f"{root_uri.rstrip('/')}/{layer}/{table}"


def in_layer(layer: str, **metadata: object) -> dict[str, object]:
    """Definition metadata placing an asset's table in ``layer``."""
    table_uri("", layer, "")  # validates the name
    return {LAYER_KEY: layer, **metadata}


def column_schema(columns: tuple[tuple[str, str, str], ...]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, description) for name, type_, description in columns]
    )
