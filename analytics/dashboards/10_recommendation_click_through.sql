-- title: Recommendation click-through per day (recommendation clicks per product view; no impression events exist yet)
-- chart: time
SELECT t, round(if(views = 0, 0, clicks / views), 4) AS click_through, views, clicks
FROM (SELECT toDate(ts) AS t, count() AS views FROM {db:Identifier}.product_views GROUP BY t) AS v
FULL OUTER JOIN (SELECT toDate(ts) AS t, count() AS clicks FROM {db:Identifier}.recommendation_clicks GROUP BY t) AS c USING (t)
ORDER BY t
