package outbox

import (
	"context"
	"errors"

	"keysmith/models"
)

// DeliveryStatuses are the statuses the delivery log filters by ("" is all).
var DeliveryStatuses = []string{"pending", "failed", "sent"}

// DeliveryLog is one page of a workspace's delivery log.
type DeliveryLog struct {
	Deliveries []models.Delivery
	Counts     map[string]int64 // deliveries by status, and "" for all of them
	Page       int              // the page shown: 1 to Pages
	Pages      int
}

// Deliveries lists one page of a workspace's deliveries (mails and webhook calls), newest
// first, for its admins: all of them, or those of one status.
func (o *Outbox) Deliveries(ctx context.Context, workspaceID int64, status string, page, perPage int) (DeliveryLog, error) {
	db := o.db.WithContext(ctx)
	var counts []struct {
		Status string
		N      int64
	}
	// Counted on deliveries_workspace_status_idx alone.
	err := db.Model(&models.Delivery{}).Select("status, COUNT(*) AS n").
		Where("workspace_id = ?", workspaceID).Group("status").Scan(&counts).Error
	if err != nil {
		return DeliveryLog{}, err
	}
	out := DeliveryLog{Counts: map[string]int64{}}
	for _, c := range counts {
		out.Counts[c.Status] = c.N
		out.Counts[""] += c.N
	}
	out.Pages = max(int((out.Counts[status]+int64(perPage)-1)/int64(perPage)), 1)
	out.Page = min(max(page, 1), out.Pages)
	q := db.Preload("Key").Where("workspace_id = ?", workspaceID)
	if status != "" {
		q = q.Where("status = ?", status) // deliveries_workspace_status_idx
	} // else deliveries_workspace_idx
	err = q.Order("created_at DESC, id DESC").Offset((out.Page - 1) * perPage).Limit(perPage).Find(&out.Deliveries).Error
	return out, err
}

// FailedCount is how many of a workspace's deliveries have failed for good
// (deliveries_workspace_status_idx).
func (o *Outbox) FailedCount(ctx context.Context, workspaceID int64) (int64, error) {
	var n int64
	err := o.db.WithContext(ctx).Model(&models.Delivery{}).
		Where("workspace_id = ? AND status = ?", workspaceID, "failed").Count(&n).Error
	return n, err
}

// PendingCount is the depth of the queue, every workspace and replica
// together (deliveries_due_idx).
func (o *Outbox) PendingCount(ctx context.Context) (int64, error) {
	var n int64
	err := o.db.WithContext(ctx).Model(&models.Delivery{}).Where("status = ?", "pending").Count(&n).Error
	return n, err
}

// ErrNotRetryable: only a failed delivery can be retried.
var ErrNotRetryable = errors.New("outbox: only failed deliveries can be retried")

// Retry puts a failed delivery back in the queue, due now.
func (o *Outbox) Retry(ctx context.Context, workspaceID, id int64) error {
	res := o.db.WithContext(ctx).Model(&models.Delivery{}).
		Where("id = ? AND workspace_id = ? AND status = ?", id, workspaceID, "failed").
		Updates(map[string]any{"status": "pending", "attempts": 0, "next_attempt_at": o.clock.Now(), "last_error": ""})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return ErrNotRetryable
	}
	return nil
}
