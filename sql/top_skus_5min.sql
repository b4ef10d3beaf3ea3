-- Best-selling SKUs over a sliding 5 minutes, moving every minute: units,
-- revenue and how many stores sold each (orders only). Rank when you query.
SELECT
    s.sku,
    k.name,
    k.category,
    sum(s.quantity) AS units,
    sum(s.amount) AS revenue,
    count(DISTINCT s.store_id) AS stores
FROM sales s
JOIN skus k ON s.sku = k.sku
WHERE s.kind = 'order'
GROUP BY hop(s.event_time, INTERVAL '1 minute', INTERVAL '5 minutes'), s.sku, k.name, k.category
