-- paid_status (helper): each member with a purchase before the instant, at as_of
-- (cutoff_name 'as_of') and at the start of W ('w_start'), with their status there
-- (SPEC §4.9, using only purchases and refunds before the instant): `refunded` if all their
-- purchases are cancelled; otherwise, with E = the end of the latest spell, `paying` if
-- t < E, `grace` if E ≤ t < E + grace_days, else `lapsed`. A later spell starts after every
-- earlier one ends, so E is the largest end of the live (uncancelled) purchases and the first
-- spell starts with the earliest of them: the status needs no spells. paid_until_us = E,
-- first_paid_us = the first spell's start, purchases = the uncancelled ones (null times when
-- refunded); spells and spell_start_us (the latest spell's start) are given at as_of only
-- (paid_spells), with spells = 0 at W's start and when refunded.
-- test unique: cutoff_name, member_id
-- test accepted_values: status = paying, grace, lapsed, refunded
WITH cutoffs AS (
    SELECT 'as_of' AS cutoff_name, CAST($as_of_us AS BIGINT) AS cutoff_us
    UNION ALL
    SELECT 'w_start' AS cutoff_name, CAST($w_start_us AS BIGINT) AS cutoff_us
),
seen AS (
    SELECT
        c.cutoff_name,
        c.cutoff_us,
        p.member_id,
        p.start_us,
        p.end_us,
        p.cancelled_us IS NULL OR p.cancelled_us >= c.cutoff_us AS live
    FROM purchase_terms p
    JOIN cutoffs c ON p.start_us < c.cutoff_us
),
buyers AS (
    SELECT
        cutoff_name,
        cutoff_us,
        member_id,
        sum(CASE WHEN live THEN 1 ELSE 0 END) AS purchases,
        max(CASE WHEN live THEN end_us END) AS paid_until_us,
        min(CASE WHEN live THEN start_us END) AS first_paid_us
    FROM seen
    GROUP BY cutoff_name, cutoff_us, member_id
),
spells AS (
    SELECT member_id, count(*) AS spells, max(spell_start_us) AS spell_start_us
    FROM paid_spells
    GROUP BY member_id
),
final AS (
    SELECT
        b.cutoff_name,
        b.member_id,
        CASE
            WHEN b.purchases = 0 THEN 'refunded'
            WHEN b.cutoff_us < b.paid_until_us THEN 'paying'
            WHEN b.cutoff_us < b.paid_until_us + $grace_us THEN 'grace'
            ELSE 'lapsed'
        END AS status,
        b.paid_until_us,
        b.first_paid_us,
        CASE WHEN b.cutoff_name = 'as_of' THEN s.spell_start_us END AS spell_start_us,
        CASE WHEN b.cutoff_name = 'as_of' THEN coalesce(s.spells, 0) ELSE 0 END AS spells,
        b.purchases
    FROM buyers b
    LEFT JOIN spells s ON s.member_id = b.member_id
)
SELECT * FROM final
