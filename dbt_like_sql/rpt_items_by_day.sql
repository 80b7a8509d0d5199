-- rpt_items_by_day: per UTC day of the window [lo, hi), conversation items staged, cut into tickets and
-- loaded (ledger done; a body split into parts counts by its first part).
-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
select
    substr(i.ts, 1, 10) as day,
    count(*) as staged,
    sum(case when ti.item_id is not null then 1 else 0 end) as in_tickets,
    sum(case when l.source_key is not null then 1 else 0 end) as loaded
from stg_conversation_items i
left join ticket_items ti
    on ti.item_id = i.source_id
left join ledger l
    on l.state = 'done'
    and l.source_key in ('message:' || i.source_id, 'message:' || i.source_id || '#1')
where i.ts >= :lo and i.ts < :hi
group by substr(i.ts, 1, 10)
order by day
