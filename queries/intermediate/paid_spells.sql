-- paid_spells (helper): each member's spells of paid time (SPEC §4.9) as seen at two instants:
-- as_of (cutoff_name 'as_of') and the start of W ('w_start', for kpis' paid_members
-- prev_value). At instant t only purchases and refunds before t count: purchases that start
-- before t and are not cancelled by a refund before t. Their intervals, ordered by
-- (start, end), merge into spells: an interval that starts at or before the current spell's
-- end + grace_days joins it (the spell's end becomes the larger end), otherwise it starts a
-- new spell. The current spell's end is the running max of the ends before the interval.
-- spell_no counts a member's spells from 1; times are integer µs since the epoch.
-- test unique: cutoff_name, member_id, spell_no
WITH cutoffs AS (
    SELECT 'as_of' AS cutoff_name, CAST($as_of_us AS BIGINT) AS cutoff_us
    UNION ALL
    SELECT 'w_start' AS cutoff_name, CAST($w_start_us AS BIGINT) AS cutoff_us
),
live AS (
    SELECT c.cutoff_name, p.member_id, p.event_id, p.source, p.start_us, p.end_us
    FROM purchase_terms p
    JOIN cutoffs c ON p.start_us < c.cutoff_us
    WHERE p.cancelled_us IS NULL OR p.cancelled_us >= c.cutoff_us
),
marked AS (
    SELECT
        *,
        CASE
            WHEN start_us <= max(end_us) OVER (
                PARTITION BY cutoff_name, member_id
                ORDER BY start_us, end_us, event_id, source
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ) + $grace_us THEN 0
            ELSE 1
        END AS starts_spell
    FROM live
),
numbered AS (
    SELECT
        *,
        sum(starts_spell) OVER (
            PARTITION BY cutoff_name, member_id
            ORDER BY start_us, end_us, event_id, source
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS spell_no
    FROM marked
),
final AS (
    SELECT
        cutoff_name,
        member_id,
        CAST(spell_no AS BIGINT) AS spell_no,
        min(start_us) AS spell_start_us,
        max(end_us) AS spell_end_us,
        count(*) AS purchases
    FROM numbered
    GROUP BY cutoff_name, member_id, spell_no
)
SELECT * FROM final
