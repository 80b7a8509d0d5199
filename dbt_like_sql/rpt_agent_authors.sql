-- rpt_agent_authors: agents who authored conversation items in the window [lo, hi), with their
-- staged name and email and how many items they wrote. The reconciliation matches the emails
-- against the target's users and lists the agents without one (unmatched agents).
select
    i.author_id as agent_id,
    a.name,
    a.email,
    a.active,
    count(*) as items
from stg_conversation_items i
left join stg_agents a
    on a.source_id = i.author_id
where i.ts >= :lo and i.ts < :hi
    and i.author_type = 'agent'
    and i.author_id is not null
group by i.author_id, a.name, a.email, a.active
order by count(*) desc, i.author_id
