"""The gateway's services: what the API routes ask for, independent of HTTP.

- `cases`: open, read, move and track cases (`CaseService`);
- `exchanges`: shares, the inbox, requests and what-if decisions (`ExchangeService`);
- `policy_input`: the policy input of every action, built in one place for real actions and what-if;
- `trail`: the audit entries the services write, built in one place;
- `process`: the process facts (flows, steps, types, purposes) of the active policy revision.
"""
