-- Production against sales per SKU per hour: units produced (good), units
-- sold net of returns, the gap and the produced/sold ratio. The planners'
-- mismatch alerts watch this view.
SELECT
    sku,
    sum(produced) AS produced,
    sum(sold) AS sold,
    sum(produced) - sum(sold) AS gap,
    CAST(sum(produced) AS DOUBLE) / nullif(sum(sold), 0) AS ratio
FROM (
    SELECT event_time, sku, quantity_good AS produced, 0 AS sold FROM production
    UNION ALL
    SELECT event_time, sku, 0 AS produced,
           CASE WHEN kind = 'return' THEN -quantity ELSE quantity END AS sold
    FROM sales
)
GROUP BY tumble(event_time, INTERVAL '1 hour'), sku
