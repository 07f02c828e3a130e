package client

import (
	"context"

	logv1 "github.com/logd/logd/api/v1"
)

// Admin returns the raw generated admin client on the connection.
func (c *Client) Admin() logv1.AdminClient { return c.admin }

// ListTopics returns the topics whose name starts with prefix ("" for
// all) that the caller may administer, sorted by name. A caller that may
// administer none gets an empty list and no error.
func (c *Client) ListTopics(ctx context.Context, prefix string) ([]*logv1.TopicDescription, error) {
	res, err := c.admin.ListTopics(ctx, &logv1.ListTopicsRequest{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	return res.GetTopics(), nil
}

// DescribeTopic returns a topic's offsets, size and settings. An unknown
// topic is NotFound; PermissionDenied without action admin on it.
func (c *Client) DescribeTopic(ctx context.Context, topic string) (*logv1.TopicDescription, error) {
	res, err := c.admin.DescribeTopic(ctx, &logv1.DescribeTopicRequest{Topic: topic})
	if err != nil {
		return nil, err
	}
	return res.GetTopic(), nil
}

// DeleteTopic removes a topic and all its records, and returns what it
// held when it was closed. Producers and consumers of the topic in flight
// get NotFound (reason TOPIC_DELETED); the next produce makes it anew.
func (c *Client) DeleteTopic(ctx context.Context, topic string) (*logv1.TopicDescription, error) {
	res, err := c.admin.DeleteTopic(ctx, &logv1.DeleteTopicRequest{Topic: topic})
	if err != nil {
		return nil, err
	}
	return res.GetTopic(), nil
}
