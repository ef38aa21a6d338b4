"""The landing files' columns: the schema of Databricks' simulated retail customer data."""

CUSTOMERS_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "tax_id",
    "tax_code",
    "customer_name",
    "state",
    "city",
    "postcode",
    "street",
    "number",
    "unit",
    "region",
    "district",
    "lon",
    "lat",
    "ship_to_address",
    "valid_from",
    "valid_to",
    "units_purchased",
    "loyalty_segment",
)

SALES_ORDERS_COLUMNS: tuple[str, ...] = (
    "clicked_items",
    "customer_id",
    "customer_name",
    "number_of_line_items",
    "order_datetime",
    "order_number",
    "ordered_products",
    "promo_info",
)
