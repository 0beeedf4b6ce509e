-- title: Searches without results
-- chart: bar
SELECT lower(trim(query)) AS search, count() AS searches
FROM {db:Identifier}.searches
WHERE hits = 0
GROUP BY search
ORDER BY searches DESC, search
LIMIT 20
