-- Delivery leases: which worker's sender lane delivers a job's outbox right
-- now, and until when (Unix ms) unless renewed. One lane per job across the
-- fleet keeps each job's deliveries in sequence order, one at a time; an
-- expired lease (a dead worker) is taken over by another worker's sweep.
ALTER TABLE jobs ADD COLUMN delivery_owner TEXT;
ALTER TABLE jobs ADD COLUMN delivery_expires_at BIGINT;
