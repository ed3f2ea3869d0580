-- paid_status (helper): each member with a purchase before the instant, at as_of
-- (cutoff_name 'as_of') and at the start of W ('w_start'), with their status there
-- (SPEC §4.9, using only purchases and refunds before the instant): `refunded` if all their
-- purchases are cancelled; otherwise, with E = the end of the latest spell, `paying` if
-- t < E, `grace` if E ≤ t < E + grace_days, else `lapsed`. paid_until_us = E (the latest spell
-- ends last), first_paid_us and spell_start_us the starts of the first and latest spells
-- (all null, and spells = 0, when refunded); purchases = the uncancelled ones.
-- test unique: cutoff_name, member_id
-- test accepted_values: status = paying, grace, lapsed, refunded
WITH cutoffs AS (
    SELECT 'as_of' AS cutoff_name, CAST($as_of_us AS BIGINT) AS cutoff_us
    UNION ALL
    SELECT 'w_start' AS cutoff_name, CAST($w_start_us AS BIGINT) AS cutoff_us
),
buyers AS (
    SELECT c.cutoff_name, c.cutoff_us, p.member_id
    FROM purchase_terms p
    JOIN cutoffs c ON p.start_us < c.cutoff_us
    GROUP BY c.cutoff_name, c.cutoff_us, p.member_id
),
spells AS (
    SELECT
        cutoff_name,
        member_id,
        count(*) AS spells,
        sum(purchases) AS purchases,
        min(spell_start_us) AS first_paid_us,
        max(spell_start_us) AS spell_start_us,
        max(spell_end_us) AS paid_until_us
    FROM paid_spells
    GROUP BY cutoff_name, member_id
),
final AS (
    SELECT
        b.cutoff_name,
        b.member_id,
        CASE
            WHEN s.member_id IS NULL THEN 'refunded'
            WHEN b.cutoff_us < s.paid_until_us THEN 'paying'
            WHEN b.cutoff_us < s.paid_until_us + $grace_us THEN 'grace'
            ELSE 'lapsed'
        END AS status,
        s.paid_until_us,
        s.first_paid_us,
        s.spell_start_us,
        coalesce(s.spells, 0) AS spells,
        coalesce(s.purchases, 0) AS purchases
    FROM buyers b
    LEFT JOIN spells s ON s.cutoff_name = b.cutoff_name AND s.member_id = b.member_id
)
SELECT * FROM final
