-- membership: one row per member with a purchase before as_of (SPEC §4.9) — status at as_of
-- (paying, grace, lapsed, refunded), paid_until (end of the latest spell), days_left
-- (floor((paid_until − as_of) / 24 h) when paying, else null), first_paid_at (start of the
-- first spell), spell_start (start of the latest spell), spells, purchases (uncancelled) and
-- refunds (all the member's refund events before as_of, matched or not); paid_until,
-- first_paid_at and spell_start are null and spells = 0 when refunded. tier, active_days and
-- last_active_at come from this run's member_activity.
-- test unique: member_id
-- test accepted_values: status = paying, grace, lapsed, refunded
-- Reference: docs/metrics.md#membership
WITH refunds AS (
    SELECT member_id, count(*) AS refunds
    FROM payment_events
    WHERE community_id = $community
      AND event_type = 'refund'
      AND occurred_at < $as_of_ts
    GROUP BY member_id
),
final AS (
    SELECT
        s.member_id,
        s.status,
        from_epoch_us(s.paid_until_us) AS paid_until,
        CASE
            WHEN s.status = 'paying' THEN CAST(
                ((s.paid_until_us - $as_of_us) - (s.paid_until_us - $as_of_us) % 86400000000)
                    / 86400000000 AS BIGINT)
        END AS days_left,
        from_epoch_us(s.first_paid_us) AS first_paid_at,
        from_epoch_us(s.spell_start_us) AS spell_start,
        s.spells,
        s.purchases,
        coalesce(r.refunds, 0) AS refunds,
        a.tier,
        a.active_days,
        a.last_active_at
    FROM paid_status s
    JOIN member_activity a ON a.member_id = s.member_id
    LEFT JOIN refunds r ON r.member_id = s.member_id
    WHERE s.cutoff_name = 'as_of'
)
SELECT * FROM final ORDER BY member_id
