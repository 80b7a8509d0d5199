-- rpt_messiest_customers: the surviving customers whose history is hardest to migrate, messiest
-- first, for a sample run before the full migration. Per customer: items in tickets, distinct
-- channels, merged-away profiles (Gladly 301s resolved to this survivor), a bad primary email
-- (missing, malformed or mixed case) and items carrying attachments. The score weighs each kind of
-- mess so that a small sample covers all of them; ties are broken by customer id (stable).
-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Parameter: the number of customers (n).
with per_customer as (
    select
        t.customer_id,
        count(*) as items,
        count(distinct i.channel) as channels,
        sum(case when cast(i.attachments as text) not in ('[]', '', 'null') then 1 else 0 end) as items_with_attachments
    from tickets t
    join ticket_items ti
        on ti.ticket_id = t.ticket_id
    join stg_conversation_items i
        on i.source_id = ti.item_id
    group by t.customer_id
),
merges as (
    select surviving_id as customer_id, count(*) as merged_profiles
    from customer_lookups
    where customer_id <> surviving_id
    group by surviving_id
),
scored as (
    select
        p.customer_id,
        p.items,
        p.channels,
        coalesce(m.merged_profiles, 0) as merged_profiles,
        case
            when c.primary_email is null then 1
            when c.primary_email not like '%_@_%._%' or c.primary_email like '% %' then 1
            when lower(c.primary_email) <> c.primary_email then 1
            else 0
        end as bad_email,
        p.items_with_attachments
    from per_customer p
    left join merges m
        on m.customer_id = p.customer_id
    left join stg_customers c
        on c.source_id = p.customer_id
)
select
    customer_id,
    items,
    channels,
    merged_profiles,
    bad_email,
    items_with_attachments,
    items + 25 * channels + 100 * merged_profiles + 100 * bad_email + 20 * items_with_attachments as score
from scored
order by score desc, customer_id
limit :n
