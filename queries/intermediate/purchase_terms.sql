-- purchase_terms (helper): what each purchase before as_of buys and which refund cancels it
-- (SPEC §4.9). Purchase p buys [start, end): start = occurred_at, end = start + term × 24 h,
-- term = product_terms[content_id] if set, else term_days (times as integer µs since the epoch).
-- Refunds, taken in (occurred_at, received_at, event_id, source) order, each cancel the
-- not-yet-cancelled purchase of the same member and content_id (null matches null) with the
-- latest start ≤ the refund's occurred_at (ties: later received_at, then larger
-- (event_id, source)); a refund that matches nothing cancels nothing.
-- That greedy matching is a stack per (member, content_id): events in time order (a purchase
-- before a refund at the same instant, purchases in tie-break order so the preferred one is on
-- top), a purchase pushes, a refund pops the top when the stack is not empty. The stack depth
-- is the running sum of ±1 clamped at 0 (depth = S − min(0, min prefix S)); a refund that pops
-- at depth d cancels the latest purchase before it that pushed to depth d.
-- cancelled_us is the cancelling refund's occurred_at (null when none), so the status at an
-- earlier instant t sees only the cancellations of refunds before t. Only the (member,
-- content_id) groups that have a refund are walked: purchases elsewhere are never cancelled.
-- test unique: source, event_id
WITH pay AS (
    SELECT
        member_id,
        event_type,
        event_id,
        source,
        occurred_at,
        received_at,
        content_id,
        day,
        CASE WHEN content_id IS NULL THEN 'n' ELSE 'v' || content_id END AS product_key,
        epoch_us(occurred_at) AS at_us
    FROM payment_events
    WHERE community_id = $community
      AND occurred_at < $as_of_ts
),
refunded AS (
    SELECT DISTINCT member_id, product_key
    FROM pay
    WHERE event_type = 'refund'
),
candidates AS (
    SELECT p.*
    FROM pay p
    JOIN refunded g ON g.member_id = p.member_id AND g.product_key = p.product_key
),
walk AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY member_id, product_key
            ORDER BY at_us, CASE WHEN event_type = 'purchase' THEN 0 ELSE 1 END, received_at, event_id, source
        ) AS pos,
        sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE -1 END) OVER (
            PARTITION BY member_id, product_key
            ORDER BY at_us, CASE WHEN event_type = 'purchase' THEN 0 ELSE 1 END, received_at, event_id, source
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS s
    FROM candidates
),
clamped AS (
    SELECT
        *,
        s - least(0, min(s) OVER (
            PARTITION BY member_id, product_key
            ORDER BY pos
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        )) AS depth
    FROM walk
),
stepped AS (
    SELECT
        *,
        coalesce(lag(depth) OVER (PARTITION BY member_id, product_key ORDER BY pos), 0) AS depth_before
    FROM clamped
),
-- Each refund that pops, with the purchase it cancels (the latest earlier one that pushed to
-- the depth it pops from; max_by_keys carries that purchase's ids, so `stepped` is walked
-- twice, not three times).
cancelled AS (
    SELECT
        max_by_keys(p.source, p.pos) AS source,
        max_by_keys(p.event_id, p.pos) AS event_id,
        min(r.at_us) AS cancelled_us
    FROM stepped r
    JOIN stepped p
      ON p.member_id = r.member_id
     AND p.product_key = r.product_key
     AND p.event_type = 'purchase'
     AND p.depth = r.depth_before
     AND p.pos < r.pos
    WHERE r.event_type = 'refund'
      AND r.depth_before > 0
    GROUP BY r.member_id, r.product_key, r.pos
),
final AS (
    SELECT
        p.member_id,
        p.event_id,
        p.source,
        p.content_id,
        p.occurred_at,
        p.day,
        p.at_us AS start_us,
        CASE
            WHEN t.term_days IS NULL THEN p.at_us + $term_us
            ELSE p.at_us + t.term_days * 86400000000
        END AS end_us,
        m.cancelled_us
    FROM pay p
    LEFT JOIN p_product_terms t ON t.product = p.content_id
    LEFT JOIN cancelled m ON m.source = p.source AND m.event_id = p.event_id
    WHERE p.event_type = 'purchase'
)
SELECT * FROM final
