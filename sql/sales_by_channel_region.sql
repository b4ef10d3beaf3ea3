-- Sales by channel and region, per minute: orders, returns, net units and net
-- revenue (returns count against both).
SELECT
    channel,
    region,
    count(*) FILTER (WHERE kind = 'order') AS orders,
    count(*) FILTER (WHERE kind = 'return') AS returns,
    sum(CASE WHEN kind = 'return' THEN -quantity ELSE quantity END) AS net_units,
    sum(CASE WHEN kind = 'return' THEN -amount ELSE amount END) AS net_revenue
FROM sales
GROUP BY tumble(event_time, INTERVAL '1 minute'), channel, region
